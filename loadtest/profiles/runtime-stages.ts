// The one-event request's pieces, each alone in a loop, on the runtime running this: CPU-ns per call
// (median of 5 rounds of 200k calls, after 200k to warm up), to compare Node's cost of the same
// JavaScript with Bun's piece by piece. Inputs are distinct strings cycled from a pool, as each request's
// are (JavaScriptCore answers a regular expression or JSON.parse on the very same string again far faster).
//   bun loadtest/profiles/runtime-stages.ts
//   bun build loadtest/profiles/runtime-stages.ts --target=node --packages=external --outdir=dist/core \
//     && node --max-semi-space-size=64 dist/core/runtime-stages.js
import { isUtf8 } from "node:buffer";
import { decodeBody } from "../../src/features/ingest/body.ts";
import { bearerToken } from "../../src/http/bearer.ts";
import { isoNow } from "../../src/lib/time.ts";
import { uuidv7 } from "../../src/lib/uuid7.ts";

const POOL = 1024;
const pool = <T>(make: (index: number) => T): T[] => Array.from({ length: POOL }, (_, index) => make(index));
// post.lua's event, its `data` varied so that no two inputs in the pool are the same string.
const events = pool((index) =>
  Buffer.from(
    `{"type":"page_view","data":{"url":"https://example.com/b${index % 10}","title":"bench${index}"}}`,
  ),
);
const dataTexts = pool((index) => `{"url":"https://example.com/b${index % 10}","title":"bench${index}"}`);
const headers = pool(
  (index) => `Bearer ${"a".repeat(60)}.${String(index).padStart(80, "b")}.${"c".repeat(43)}`,
);
const values = pool(
  (index) =>
    `{"id":"${uuidv7()}","type":"page_view","data":{"url":"https://example.com/bench","title":"bench${index}"},"tenant":"bench","receivedAt":"${new Date().toISOString()}"}`,
);
const valueBytes = values.map((value) => Buffer.from(value));
const limits = { maxBytes: 1024 * 1024, maxRecords: 1000 };

const stages: Record<string, (index: number) => unknown> = {
  "decodeBody, one event (scanner, JSON.parse of data)": (index) =>
    decodeBody(events[index] as Buffer, "application/json", undefined, limits),
  "JSON.parse of the event's data (52 characters)": (index) => JSON.parse(dataTexts[index] as string),
  "isUtf8, 80 bytes": (index) => isUtf8(events[index] as Buffer),
  "latin1 text of 80 bytes": (index) => (events[index] as Buffer).toString("latin1"),
  "bearerToken (a 190-character token)": (index) => bearerToken(headers[index]),
  uuidv7: () => uuidv7(),
  "Buffer.allocUnsafe + latin1 write, 200 characters": (index) => {
    const value = values[index] as string;
    const bytes = Buffer.allocUnsafe(value.length);
    bytes.write(value, 0, "latin1");
    return bytes;
  },
  "Buffer.from, 200 characters": (index) => Buffer.from(values[index] as string),
  "utf8 text of 200 bytes": (index) => (valueBytes[index] as Buffer).toString("utf8"),
  "JSON.stringify of a record's headers": (index) =>
    JSON.stringify({ tenant: `bench${index}`, type: "page_view", "content-type": "application/json" }),
  "new Promise, resolved, then": (index) => new Promise((resolve) => resolve(index)).then(() => index),
  "performance.now()": () => performance.now(),
  isoNow: () => isoNow(),
};

const CALLS = 200_000;
let sink: unknown;
console.log(
  `${typeof Bun !== "undefined" ? `Bun ${Bun.version}` : `Node ${process.version}`}, CPU-ns per call:`,
);
for (const [name, stage] of Object.entries(stages)) {
  for (let call = 0; call < CALLS; call++) sink = stage(call % POOL);
  const rounds: number[] = [];
  for (let round = 0; round < 5; round++) {
    const before = process.cpuUsage();
    for (let call = 0; call < CALLS; call++) sink = stage(call % POOL);
    const used = process.cpuUsage(before);
    rounds.push(((used.user + used.system) * 1000) / CALLS);
  }
  rounds.sort((a, b) => a - b);
  console.log(
    `  ${name}: ${(rounds[2] as number).toFixed(0)} (rounds ${rounds.map((ns) => ns.toFixed(0)).join(" ")})`,
  );
}
void sink;
process.exit(0);
