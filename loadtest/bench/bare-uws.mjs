// The Node engine alone: a bare uWebSockets.js server that reads the POST body
// and answers 202 with a small JSON body, with no auth, validation or Kafka.
// READ_ADDRESS=1: also reads the client address as the gateway's uWS adapter does for the per-IP limit
// (an IPv4 peer's four bytes, formatted; loadtest/profiles/peer-address.ts).
import uws from "uWebSockets.js";

const readAddress = process.env.READ_ADDRESS === "1";

function peerAddress(res) {
  const bytes = new Uint8Array(res.getRemoteAddress());
  return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
}

const port = Number(process.env.PORT ?? 0);
uws
  .App()
  .post("/*", (res) => {
    if (readAddress && peerAddress(res) === "") throw new Error("no address");
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    res.onData((_chunk, isLast) => {
      if (isLast && !aborted) {
        res.cork(() => {
          res.writeStatus("202 Accepted").writeHeader("content-type", "application/json");
          res.end('{"accepted":1,"rejected":0,"errors":[]}');
        });
      }
    });
  })
  .listen("127.0.0.1", port, (token) => {
    if (!token) {
      console.error(`cannot listen on 127.0.0.1:${port}`);
      process.exit(1);
    }
    console.log(JSON.stringify({ msg: "listening", port: uws.us_socket_local_port(token) }));
  });
