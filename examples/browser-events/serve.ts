/**
 * Serves the browser example: its page, one bundle of its script with the
 * client, and (in development) `GET /token`, short-lived ingest tokens.
 * `bun examples/browser-events/serve.ts [port]` prints the address to open.
 */
import { type DevTokenIssuer, type DevTokenOptions, devTokenIssuer } from "../dev-tokens.ts";

const HERE = new URL(".", import.meta.url).pathname;

export async function serveBrowserEvents(
  options: { port?: number; tokens?: DevTokenOptions } = {},
): Promise<{ url: string; tokens: DevTokenIssuer; stop(): void }> {
  const build = await Bun.build({ entrypoints: [`${HERE}page.ts`], target: "browser", format: "esm" });
  if (!build.success) throw new AggregateError(build.logs, "the page did not build");
  const script = await (build.outputs[0] as Blob).text();
  const page = await Bun.file(`${HERE}index.html`).text();
  // A page's token is anyone's who opens the page: it sends analytics, never into live channels.
  const tokens = devTokenIssuer({ scopes: ["ingest"], channels: [], ...options.tokens });
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: options.port ?? 0,
    fetch(request) {
      const { pathname } = new URL(request.url);
      if (pathname === "/")
        return new Response(page, { headers: { "content-type": "text/html; charset=utf-8" } });
      if (pathname === "/page.js") {
        return new Response(script, { headers: { "content-type": "text/javascript; charset=utf-8" } });
      }
      if (pathname === "/token") return tokens.respond();
      return new Response("not found", { status: 404 });
    },
  });
  return { url: `http://127.0.0.1:${server.port}/`, tokens, stop: () => server.stop(true) };
}

if (import.meta.main) {
  const { url } = await serveBrowserEvents({ port: Number(process.argv[2] ?? 5174) });
  console.log(`browser example: ${url}#gateway=http://localhost:8080`);
  console.log(`the gateway must allow this page's origin: CORS_ORIGINS=${new URL(url).origin}`);
}
