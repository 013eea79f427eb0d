// The Bun engine alone: Bun.serve reading the POST body and answering 202 with
// a small JSON body, with no auth, validation or sink (bare-uws.mjs on Bun).
// READ_ADDRESS=1: also reads the client address as the per-IP limit does (loadtest/profiles/peer-address.ts).
const readAddress = process.env.READ_ADDRESS === "1";
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: Number(process.env.PORT ?? 0),
  async fetch(request, bunServer) {
    if (readAddress && bunServer.requestIP(request)?.address === "") throw new Error("no address");
    await request.arrayBuffer();
    return new Response('{"accepted":1,"rejected":0,"errors":[]}', {
      status: 202,
      headers: { "content-type": "application/json" },
    });
  },
});
console.log(JSON.stringify({ msg: "listening", port: server.port }));
