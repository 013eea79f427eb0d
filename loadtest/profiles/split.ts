// Who pays for each sample of a V8 .cpuprofile: every sample is charged to the
// nearest frame on its stack that is ours (a `src/` module, from the `// src/...`
// markers Bun's bundler writes in each file of dist/: main.js and its chunks) or a
// package's file (node_modules), so Buffer, utf8Write and other runtime internals
// count for their caller. GC and idle stay apart. Prints a markdown table of groups
// and of the top client files.
//   bun loadtest/profiles/split.ts FILE.cpuprofile
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

const [path] = process.argv.slice(2);
if (!path) throw new Error("usage: split.ts FILE.cpuprofile");
const profile = JSON.parse(readFileSync(path, "utf8")) as { nodes: ProfileNode[]; samples: number[] };

type Marker = { line: number; module: string };
// Bundle file -> its lines' source modules, read once per file the profile names.
const markersByFile = new Map<string, Marker[]>();
function markersOf(url: string): Marker[] {
  let markers = markersByFile.get(url);
  if (!markers) {
    markers = [];
    for (const [index, text] of readFileSync(url.startsWith("file:") ? fileURLToPath(url) : url, "utf8")
      .split("\n")
      .entries()) {
      const match = /^\/\/ (src\/\S+)$/.exec(text);
      if (match) markers.push({ line: index + 1, module: match[1] as string });
    }
    markersByFile.set(url, markers);
  }
  return markers;
}
function moduleAt(url: string, line: number): string {
  let found = "src/(bundle prelude)";
  for (const marker of markersOf(url)) {
    if (marker.line > line) break;
    found = marker.module;
  }
  return found;
}

const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const parent = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);

function owner(node: ProfileNode): string | undefined {
  const { url, lineNumber, functionName } = node.callFrame;
  if (functionName === "(garbage collector)") return "(garbage collector)";
  if (functionName === "(idle)") return "(idle)";
  if (/\/dist\/[^/]+\.js$/.test(url)) return moduleAt(url, lineNumber + 1);
  const pkg = /node_modules\/(@[^/]+\/[^/]+|[^/]+)\/(.*)$/.exec(url);
  if (pkg) return `${pkg[1]}/${pkg[2]}`;
  return undefined;
}

const counts = new Map<string, number>();
let total = 0;
for (const id of profile.samples) {
  let node: ProfileNode | undefined = byId.get(id);
  let label: string | undefined;
  while (node && label === undefined) {
    label = owner(node);
    const up = parent.get(node.id);
    node = up === undefined ? undefined : byId.get(up);
  }
  label ??= "(runtime, no JS caller)";
  if (label === "(idle)") continue;
  total++;
  counts.set(label, (counts.get(label) ?? 0) + 1);
}

function group(label: string): string {
  if (label.startsWith("@platformatic/kafka/dist/clients/serde"))
    return "client: string serializers (Buffer.from)";
  if (label.startsWith("@platformatic/kafka/dist/protocol/murmur2")) return "client: murmur2 partitioner";
  if (label.startsWith("@platformatic/kafka/")) return "client: producer, record batch, connection";
  if (label.startsWith("@platformatic/dynamic-buffer/")) return "client: dynamic-buffer (request assembly)";
  if (label.startsWith("@platformatic/wasm-utils/")) return "client: wasm-utils (lz4, crc32c)";
  if (/^src\/infra\/(kafka|delivery)\//.test(label)) return "ours: src/infra/kafka + delivery";
  if (label.startsWith("src/")) return "ours: HTTP, ingest, rest";
  if (label.startsWith("(")) return label;
  return "other packages (ajv compile at start, jose, ...)";
}

const groups = new Map<string, number>();
for (const [label, n] of counts) groups.set(group(label), (groups.get(group(label)) ?? 0) + n);
const pct = (n: number) => ((100 * n) / total).toFixed(1);
console.log(`${total} busy samples\n\n| group | % |\n|---|---:|`);
for (const [name, n] of [...groups].sort((a, b) => b[1] - a[1])) console.log(`| ${name} | ${pct(n)} |`);
console.log("\n| file (callees folded in) | % |\n|---|---:|");
for (const [name, n] of [...counts].sort((a, b) => b[1] - a[1]).slice(0, 20))
  console.log(`| ${name} | ${pct(n)} |`);
