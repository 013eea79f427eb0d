// In-process CPU cost of the standards on the ingest path (issue 18, issue 23 item 4): decodeBody on a
// plain JSON and a CloudEvents batch, Idempotency-Key on the memory store (first request, replay),
// W3C trace context parsing. CPU time (process.cpuUsage), so a busy machine disturbs it less than wrk.
//
//   bun loadtest/profiles/standards.ts [root]   root: another checkout to measure (default: this one)
import { join } from "node:path";

const root = process.argv[2] ?? join(import.meta.dir, "../..");
const { decodeBody } = await import(`${root}/src/features/ingest/body.ts`);
const { Idempotency } = await import(`${root}/src/http/idempotency.ts`);
const { MemoryIdempotencyStore } = await import(`${root}/src/infra/idempotency/memory-store.ts`);
const { traceContextOf } = await import(`${root}/src/http/trace-context.ts`);
const { createMetrics } = await import(`${root}/src/metrics/metrics.ts`);
const enc = (t: string) => new TextEncoder().encode(t);
const L = { maxBytes: 1e7, maxRecords: 10000 };
const event = '{"type":"page_view","data":{"url":"https://example.com/bench","title":"bench"}}';
const ce =
  '{"specversion":"1.0","type":"page_view","source":"/bench","id":"x","data":{"url":"https://example.com/bench","title":"bench"}}';
const batch = enc(`[${Array(100).fill(event).join(",")}]`);
const ceBatch = enc(`[${Array(100).fill(ce).join(",")}]`);
const one = enc(event);
function cpu(fn: () => unknown, n: number) {
  for (let i = 0; i < n / 10; i++) fn();
  const t = process.cpuUsage();
  for (let i = 0; i < n; i++) fn();
  const u = process.cpuUsage(t);
  return (u.user + u.system) / n;
}
async function cpuAsync(fn: (i: number) => Promise<unknown>, n: number) {
  for (let i = 0; i < n / 10; i++) await fn(-i - 1);
  const t = process.cpuUsage();
  for (let i = 0; i < n; i++) await fn(i);
  const u = process.cpuUsage(t);
  return (u.user + u.system) / n;
}
const res: Record<string, number> = {};
res["json batch100 µs/event"] =
  (await cpuAsync(() => decodeBody(batch, "application/json", undefined, L), 5000)) / 100;
res["cloudevents-batch100 µs/event"] =
  (await cpuAsync(() => decodeBody(ceBatch, "application/cloudevents-batch+json", undefined, L), 5000)) / 100;
const store = new MemoryIdempotencyStore({
  windowMs: 86400000,
  pendingMs: 60000,
  maxKeys: 100000,
  maxBytes: 64 << 20,
});
const idem = new Idempotency(store, createMetrics("b", "0"));
const request = {
  method: "POST",
  path: "/v1/events",
  query: new URLSearchParams(),
  header: (n: string) => (n === "content-type" ? "application/json" : undefined),
  remoteAddress: "",
  body: async () => one,
};
const reply = {
  status: 202,
  headers: { "content-type": "application/json" },
  body: '{"accepted":1,"rejected":0,"errors":[]}',
};
res["idempotency first (1 event body) µs/req"] = await cpuAsync(
  (i) => idem.run(request, `k${i}`, "t", one, async () => reply),
  50000,
);
res["idempotency first (100-event body) µs/req"] = await cpuAsync(
  (i) => idem.run(request, `b${i}`, "t", batch, async () => reply),
  20000,
);
res["idempotency replay µs/req"] = await cpuAsync(
  () => idem.run(request, "k5", "t", one, async () => reply),
  50000,
);
const tp = {
  header: (n: string) =>
    n === "traceparent"
      ? "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
      : n === "tracestate"
        ? "rojo=00f067aa0ba902b7"
        : undefined,
};
const none = { header: (_: string) => undefined };
res["traceContextOf (valid) µs/req"] = cpu(() => traceContextOf(tp), 200000);
res["traceContextOf (absent) µs/req"] = cpu(() => traceContextOf(none), 200000);
for (const [k, v] of Object.entries(res)) console.log(k, v.toFixed(3));
