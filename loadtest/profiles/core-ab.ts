// An A/B of the one-event core (one-event-app.ts) of two checkouts in one process: their rounds
// alternate (old new new old ...), so load from elsewhere on the machine falls on both alike, where
// separate runs a minute apart moved by ±20% on this shared machine. Each round's CPU is the whole
// process's (every thread), so what one side leaves behind (a collection due, the log's last batch)
// can land in the other's round: short rounds in ABBA order spread that over both.
//
//   bun loadtest/profiles/core-ab.ts OLD_ROOT [rounds] [seconds]
//   bun build loadtest/profiles/one-event-app.ts loadtest/profiles/core-ab.ts --target=node \
//     --packages=external --outdir=dist/core   # in this checkout, and one-event-app.ts alone in OLD_ROOT
//   node --max-semi-space-size=64 dist/core/core-ab.js OLD_ROOT [rounds] [seconds]
// OLD_ROOT needs this directory's one-event-app.ts (copy it over) and, for Node, its build.
// ACK and CONNECTIONS as for one-event-core.ts.
import { join } from "node:path";
import type { oneEventCore as OneEventCoreFactory } from "./one-event-app.ts";

const [oldRoot, roundsArg = "10", secondsArg = "1"] = process.argv.slice(2);
if (!oldRoot) throw new Error("usage: core-ab.ts OLD_ROOT [rounds] [seconds]");
const rounds = Number(roundsArg);
const seconds = Number(secondsArg);
const bun = typeof Bun !== "undefined";
const here = join(import.meta.dirname ?? __dirname, bun ? "." : "../../loadtest/profiles");
const newRoot = join(here, "../..");
const modulePath = (root: string) =>
  bun ? join(root, "loadtest/profiles/one-event-app.ts") : join(root, "dist/core/one-event-app.js");

async function load(root: string) {
  const { oneEventCore } = (await import(modulePath(root))) as { oneEventCore: typeof OneEventCoreFactory };
  return oneEventCore({ connections: Number(process.env.CONNECTIONS ?? 256), ack: process.env.ACK });
}

const sides = { old: await load(oldRoot), new: await load(newRoot) };
for (const core of Object.values(sides)) await core.round(1); // warm-up
const results: Record<"old" | "new", number[]> = { old: [], new: [] };
for (let index = 0; index < rounds; index++) {
  const order: Array<"old" | "new"> = index % 2 === 0 ? ["old", "new"] : ["new", "old"];
  for (const side of order) {
    const { requests, cpuUs } = await sides[side].round(seconds);
    results[side].push(cpuUs / requests);
  }
}
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
};
const ratios = results.new.map((value, index) => value / (results.old[index] as number));
for (const side of ["old", "new"] as const)
  console.log(
    `${side} (${side === "old" ? oldRoot : newRoot}), CPU-us/request: median ${median(results[side]).toFixed(2)}; rounds ${results[side].map((value) => value.toFixed(2)).join(" ")}`,
  );
console.log(
  `new ÷ old per pair of rounds: median ${median(ratios).toFixed(3)}; ${ratios.map((ratio) => ratio.toFixed(3)).join(" ")}`,
);
for (const core of Object.values(sides)) core.close();
process.exit(0);
