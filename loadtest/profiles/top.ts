// Top-N self time by function from a V8 .cpuprofile (node --cpu-prof), as a markdown table.
//   bun loadtest/profiles/top.ts dist/profiles/CPU.*.cpuprofile [N] [LAST_SECONDS]
// LAST_SECONDS keeps only the samples of the profile's last seconds (a
// benchmark's round, without the start-up before it).
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const [path, n = "25", last] = process.argv.slice(2);
if (!path) throw new Error("usage: top.ts FILE.cpuprofile [N]");
const profile = JSON.parse(readFileSync(path, "utf8")) as Profile;
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const counts = new Map<string, number>();
let total = 0;
let idle = 0;
// Each sample's time since the profile's start (µs), to keep only the last seconds.
const times: number[] = [];
let elapsed = 0;
for (const delta of profile.timeDeltas) {
  elapsed += delta;
  times.push(elapsed);
}
const from = last === undefined ? -1 : elapsed - Number(last) * 1e6;
for (const [index, id] of profile.samples.entries()) {
  if ((times[index] as number) < from) continue;
  const frame = (byId.get(id) as ProfileNode).callFrame;
  if (frame.functionName === "(idle)") {
    idle++;
    continue;
  }
  total++;
  const file = frame.url.replace(/^.*\/(node_modules\/)?/, (_m, nm) => (nm ? "node_modules/" : ""));
  const where = frame.url ? `${file}:${frame.lineNumber + 1}` : "";
  const label = frame.functionName || "(anonymous)";
  const name = `${label.length > 60 ? `${label.slice(0, 60)}…` : label} ${where}`.trim();
  counts.set(name, (counts.get(name) ?? 0) + 1);
}
console.log(`${total} busy samples (${idle} idle left out)\n`);
console.log("| # | self % | function |");
console.log("|---:|---:|---|");
[...counts.entries()]
  .sort((a, b) => b[1] - a[1])
  .slice(0, Number(n))
  .forEach(([name, count], index) => {
    console.log(`| ${index + 1} | ${((100 * count) / total).toFixed(1)} | \`${name}\` |`);
  });
