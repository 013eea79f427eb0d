import type { Listen } from "../ports/transport.ts";
import type { UwsEngine } from "./uws/engine.ts";

/** What serves HTTP and WebSockets: Bun.serve, or uWebSockets.js native or its JS fallback. */
export type Engine = "bun" | UwsEngine;

/**
 * Picks the adapter for the runtime we run on. Imported lazily so Node never
 * loads the Bun adapter and Bun never loads the uWebSockets.js native addon.
 */
export async function selectTransport(): Promise<{ listen: Listen; engine: Engine }> {
  if (typeof Bun !== "undefined") return { listen: (await import("./bun/adapter.ts")).listen, engine: "bun" };
  const uws = await import("./uws/adapter.ts");
  return { listen: uws.listen, engine: uws.engine };
}
