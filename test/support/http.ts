import type { HttpRequest } from "../../src/ports/transport.ts";

/** An HttpRequest as an adapter would hand it to the core, for router-level tests. */
export function fakeRequest(method: string, path: string, headers: Record<string, string> = {}): HttpRequest {
  return {
    method,
    path,
    query: new URLSearchParams(),
    header: (name) => headers[name],
    headerNames: () => Object.keys(headers),
    remoteAddress: "127.0.0.1",
    body: async () => new Uint8Array(0),
  };
}
