/**
 * Which uWebSockets.js runs. The package ships native builds for a few Node
 * ABIs only; on any other Node it prints "Falling back to a NodeJS
 * implementation" and loads a pure-JS stand-in built on `ws`, which lacks
 * what the gateway uses (on Node 22 it never answered /health/live). So the
 * gateway refuses to start on it unless told otherwise (UWS_ALLOW_FALLBACK).
 */
export type UwsEngine = "uws-native" | "uws-js-fallback";

/** Node's module ABI (process.versions.modules) → its major version, for the ABIs the package builds. */
const NODE_MAJOR_BY_ABI: Record<string, number> = { "93": 16, "108": 18, "115": 20 };

/**
 * The Node versions the gateway supports on the native engine: package.json's
 * `engines`, and deploy/node24's (the uWebSockets.js build there needs glibc >= 2.38).
 */
export const SUPPORTED_NODE =
  "Node 20 (>= 20.19.4), Node 24 with deploy/node24's dependencies on glibc >= 2.38 (the container's --target node24)";

/** A native addon's functions print as "[native code]"; the JS fallback's print their source. */
export function uwsEngine(loaded: { App?: unknown }): UwsEngine {
  return typeof loaded.App === "function" && String(loaded.App).includes("[native code]")
    ? "uws-native"
    : "uws-js-fallback";
}

/**
 * Why the gateway will not start on the fallback, naming what it runs on and
 * what it supports. `forced`: the package's own UWS_USE_FALLBACK asked for it.
 */
export function fallbackRefusal(nodeVersion: string, abi: string, forced = false): string {
  const built = NODE_MAJOR_BY_ABI[abi];
  const why = forced
    ? "UWS_USE_FALLBACK made uWebSockets.js load"
    : `uWebSockets.js has no native build for Node ${nodeVersion} (module ABI ${abi}${built ? `, Node ${built}` : ""}) and fell back to`;
  return (
    `${why} its pure-JS implementation, which the gateway does not work on. ` +
    `Run ${SUPPORTED_NODE}, or Bun (bun src/main.ts); UWS_ALLOW_FALLBACK=true starts anyway, unsupported.`
  );
}
