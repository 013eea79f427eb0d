// decodeBody alone (scanner, JSON.parse of data, the records' texts) on
// post.lua's 100-event body, in CPU-ns per record: the body-reading stage of
// batch-core.ts, whose whole-path rounds spread wider than a change to this
// stage moves them. Run from a checkout's root; copy it into another for an A/B.
//   bun loadtest/profiles/decode-body.ts [seconds]
//   bun build loadtest/profiles/decode-body.ts --target=node --packages=external --outfile=dist/decode-body.mjs && node dist/decode-body.mjs
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { decodeBody } from "../../src/features/ingest/body.ts";

const ROOT = process.cwd();
const event = /local event = '([^']+)'/.exec(
  readFileSync(join(ROOT, "loadtest/bench/post.lua"), "utf8"),
)?.[1] as string;
const body = Buffer.from(`[${Array(100).fill(event).join(",")}]`);
const limits = { maxBytes: 1024 * 1024, maxRecords: 1000 };

async function drive(ms: number): Promise<number> {
  const until = performance.now() + ms;
  let records = 0;
  while (performance.now() < until) {
    for (let i = 0; i < 100; i++)
      records += (await decodeBody(body, "application/json", undefined, limits)).length;
  }
  return records;
}

await drive(500);
const from = process.cpuUsage();
const records = await drive(Number(process.argv[2] ?? 2) * 1000);
const used = process.cpuUsage(from);
console.log(
  `${typeof Bun === "undefined" ? "node" : "bun"}: decodeBody ${(((used.user + used.system) / records) * 1000).toFixed(0)} CPU-ns/record`,
);
