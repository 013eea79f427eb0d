// Per function, busy samples of profile B minus profile A (self time, or inclusive: every
// function on a sample's stack counts once), largest first: where one case spends more.
//   bun loadtest/profiles/diff.ts A.cpuprofile B.cpuprofile [self|incl] [N]
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

// A bundle chunk's name without its content hash (kafka-sink-t5sr08zj.js), so two builds' frames line up.
const nameOf = (node: ProfileNode) =>
  `${node.callFrame.functionName || "(anonymous)"} ${node.callFrame.url.replace(/^.*\//, "").replace(/-[a-z0-9]{8}\.js$/, ".js")}:${node.callFrame.lineNumber + 1}`;

function load(path: string) {
  const profile = JSON.parse(readFileSync(path, "utf8")) as { nodes: ProfileNode[]; samples: number[] };
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let busy = 0;
  for (const id of profile.samples) {
    const node = byId.get(id) as ProfileNode;
    if (node.callFrame.functionName === "(idle)") continue;
    busy++;
    self.set(nameOf(node), (self.get(nameOf(node)) ?? 0) + 1);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const name = nameOf(byId.get(at) as ProfileNode);
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + 1);
    }
  }
  return { self, inclusive, busy };
}

const [pathA, pathB, mode = "self", n = "40"] = process.argv.slice(2);
if (!pathA || !pathB) throw new Error("usage: diff.ts A.cpuprofile B.cpuprofile [self|incl] [N]");
const a = load(pathA);
const b = load(pathB);
console.log(
  `busy samples: ${a.busy} (A) against ${b.busy} (B)\n\n|  B − A | A | B | function |\n|---:|---:|---:|---|`,
);
const countsA = mode === "self" ? a.self : a.inclusive;
const countsB = mode === "self" ? b.self : b.inclusive;
const rows = [...new Set([...countsA.keys(), ...countsB.keys()])].map((name) => {
  const inA = countsA.get(name) ?? 0;
  const inB = countsB.get(name) ?? 0;
  return { name, difference: inB - inA, inA, inB };
});
rows.sort((x, y) => y.difference - x.difference);
for (const row of rows.slice(0, Number(n)))
  console.log(`| ${row.difference} | ${row.inA} | ${row.inB} | \`${row.name}\` |`);
