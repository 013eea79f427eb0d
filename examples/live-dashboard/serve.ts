/**
 * Serves the live dashboard: its page and one bundle of its script with the
 * client. `bun examples/live-dashboard/serve.ts [port]` prints the address to open.
 */
const HERE = new URL(".", import.meta.url).pathname;

export async function serveDashboard(port = 0): Promise<{ url: string; stop(): void }> {
  const build = await Bun.build({ entrypoints: [`${HERE}dashboard.ts`], target: "browser", format: "esm" });
  if (!build.success) throw new AggregateError(build.logs, "the dashboard did not build");
  const script = await (build.outputs[0] as Blob).text();
  const page = await Bun.file(`${HERE}index.html`).text();
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port,
    fetch(request) {
      const { pathname } = new URL(request.url);
      if (pathname === "/")
        return new Response(page, { headers: { "content-type": "text/html; charset=utf-8" } });
      if (pathname === "/dashboard.js") {
        return new Response(script, { headers: { "content-type": "text/javascript; charset=utf-8" } });
      }
      return new Response("not found", { status: 404 });
    },
  });
  return { url: `http://127.0.0.1:${server.port}/`, stop: () => server.stop(true) };
}

if (import.meta.main) {
  const { url } = await serveDashboard(Number(process.argv[2] ?? 5173));
  console.log(`live dashboard: ${url}#gateway=http://localhost:8080&token=<token>&channel=orders`);
}
