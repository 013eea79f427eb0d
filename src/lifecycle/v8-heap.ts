import { setFlagsFromString } from "node:v8";

/**
 * `--no-allocation-site-pretenuring`, set by the gateway on itself when it
 * runs on Node, whoever starts it (the images, `npm run start:node`, a plain
 * `node dist/main.js`, each worker of a supervisor).
 *
 * V8 allocates the objects of a site whose objects mostly survived a
 * scavenge straight in the old generation. A request's records live until
 * the sink acknowledges them, so under load some per-request sites qualify;
 * their objects then die in the old generation, still pointing at the young
 * objects of later requests, and those survive every scavenge and are
 * promoted in turn until a full collection. On Node 24 (V8 13.6) that took
 * hold in every paced run here: 7–9 MiB promoted a scavenge, a full
 * collection a second, and p99 at 800 100-event requests a second 29–47 ms
 * instead of 6–9 (loadtest/RESULTS.md, issue 17 target 4). Node 20 was not
 * seen in that state; the flag holds for it too.
 *
 * A flag the process was started with about the same setting
 * (`node --allocation-site-pretenuring dist/main.js`) is left as given.
 */
const PRETENURING = "allocation-site-pretenuring";

/** Turns V8's allocation-site pretenuring off on Node, unless Node's command line set it; Bun (JavaScriptCore) has no such setting. */
export function tuneNodeHeap(execArgv: readonly string[] = process.execArgv): void {
  if (typeof Bun !== "undefined") return;
  if (execArgv.some((argument) => argument.includes(PRETENURING))) return;
  setFlagsFromString(`--no-${PRETENURING}`);
}
