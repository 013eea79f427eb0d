// Top-N self time by function from a V8 .cpuprofile (node --cpu-prof), as a markdown table.
//   bun loadtest/profiles/top.ts dist/profiles/CPU.*.cpuprofile [N]
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
}

const [path, n = "25"] = process.argv.slice(2);
if (!path) throw new Error("usage: top.ts FILE.cpuprofile [N]");
const profile = JSON.parse(readFileSync(path, "utf8")) as Profile;
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const counts = new Map<string, number>();
let total = 0;
let idle = 0;
for (const id of profile.samples) {
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
