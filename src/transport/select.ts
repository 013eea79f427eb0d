import type { Listen } from "../ports/transport.ts";

/**
 * Picks the adapter for the runtime we run on. Imported lazily so Node never
 * loads the Bun adapter and Bun never loads the uWebSockets.js native addon.
 */
export async function selectTransport(): Promise<Listen> {
  if (typeof Bun !== "undefined") return (await import("./bun/adapter.ts")).listen;
  return (await import("./uws/adapter.ts")).listen;
}
