import { setFlagsFromString } from "node:v8";

/**
 * V8 flags the gateway sets on itself when it runs on Node, whoever starts
 * it (the images, `npm run start:node`, a plain `node dist/main.js`, each
 * worker of a supervisor).
 *
 * `--no-allocation-site-pretenuring`: V8 allocates objects of a site whose
 * objects mostly survived a scavenge straight in the old generation. A
 * request's records live until the sink acknowledges them, so under load some
 * per-request sites qualify; their objects then die in the old generation,
 * still pointing at the young objects of later requests, and those survive
 * every scavenge and are promoted in turn until a full collection. On Node 24
 * (V8 13.6) that took hold in every paced run here: 7–9 MiB promoted per
 * scavenge, a full collection a second, and p99 at 800 100-event requests a
 * second 29–47 ms instead of 6–7 (loadtest/RESULTS.md, issue 17 target 4).
 * Node 20 was not seen in that state; the flag holds for it too.
 */
export const NODE_V8_FLAGS = ["--no-allocation-site-pretenuring"];

/** Sets NODE_V8_FLAGS on Node; Bun (JavaScriptCore) has no such flags. */
export function tuneNodeHeap(): void {
  if (typeof Bun !== "undefined") return;
  for (const flag of NODE_V8_FLAGS) setFlagsFromString(flag);
}
