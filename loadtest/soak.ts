// Memory soak: runs the real gateway on one runtime against the real broker
// for DURATION_SEC while ingesting events (some with channels) and churning
// WebSocket clients that connect, subscribe, receive and leave. Samples the
// gateway's heap and RSS from /metrics and fails when memory keeps growing
// after warm-up: the lowest heap of the last third (the closest sample to the
// live set) may exceed neither the lowest of the middle third by more than
// 30% + 8 MiB nor, when it does, the highest heap the middle third reached.
// Without a forced collection, old garbage can sit in the heap for the whole
// run (one CI run: floor 30.9 -> 48.8 MiB under a 122 MiB peak, where four
// other runs stayed within ±25%), so a 40 s soak catches gross leaks; a longer
// DURATION_SEC catches slow ones. Rate limits are on and shared through the
// services' Redis, and each request comes from another client IP (through
// TRUST_PROXY), so the limiter's per-key state churns as under a flood.
//   bun loadtest/soak.ts node|bun        (needs scripts/services up)
import { signDevToken } from "../src/infra/auth/dev-token.ts";
import { startGateway } from "../test/e2e/harness.ts";

const runtime = (process.argv[2] ?? "node") as "node" | "bun";
const durationSec = Number(process.env.DURATION_SEC ?? 45);
const secret = `soak-${crypto.randomUUID()}`;
const gateway = await startGateway(runtime, {
  JWT_SECRET: secret,
  KAFKA_TOPIC: "soak-events",
  KAFKA_FANOUT_TOPIC: "soak-fanout",
  LOG_LEVEL: "info",
  // Budgets above the offered load: the limiter works on every request and refuses none.
  RATE_LIMIT_ENABLED: "true",
  RATE_LIMIT_EVENTS_PER_SEC: "100000000",
  RATE_LIMIT_REQUESTS_PER_SEC: "100000000",
  TRUST_PROXY: "1",
});
const ingestToken = await signDevToken({ secret, tenant: "soak", scopes: ["ingest", "publish"] });
const subscribeToken = await signDevToken({ secret, tenant: "soak", scopes: ["subscribe"] });

interface Sample {
  at: number;
  heap: number;
  rss: number;
  limiterDegraded: number;
}
const samples: Sample[] = [];
const metric = (text: string, name: string) =>
  Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);

const deadline = Date.now() + durationSec * 1000;
let requests = 0;
let failures = 0;
let delivered = 0;

async function ingestLoop(): Promise<void> {
  const headers = { authorization: `Bearer ${ingestToken}`, "content-type": "application/json" };
  while (Date.now() < deadline) {
    const records = Array.from({ length: 20 }, (_, i) => ({
      type: "click",
      channel: `room-${i % 50}`,
      data: { element: `button-${requests}-${i}` },
    }));
    const response = await fetch(`${gateway.url}/v1/events`, {
      method: "POST",
      headers: {
        ...headers,
        "x-forwarded-for": `10.${(requests >> 16) & 255}.${(requests >> 8) & 255}.${requests & 255}`,
      },
      body: JSON.stringify(records),
    });
    await response.arrayBuffer();
    requests++;
    if (response.status !== 202) failures++;
  }
}

async function socketChurn(): Promise<void> {
  while (Date.now() < deadline) {
    const socket = new WebSocket(`${gateway.wsUrl}?token=${subscribeToken}`);
    socket.onmessage = (event) => {
      const frame = JSON.parse(String(event.data));
      if (frame.type === "connected")
        socket.send(JSON.stringify({ type: "subscribe", channel: `room-${requests % 50}` }));
      if (frame.type === "event") delivered++;
    };
    await Bun.sleep(300 + Math.random() * 500);
    socket.close();
  }
}

async function sampler(): Promise<void> {
  while (Date.now() < deadline) {
    const text = await (await fetch(`${gateway.url}/metrics`)).text();
    samples.push({
      at: Date.now(),
      heap: metric(text, "nodejs_heap_size_used_bytes"),
      rss: metric(text, "process_resident_memory_bytes"),
      limiterDegraded: metric(text, "gateway_rate_limiter_degraded"),
    });
    await Bun.sleep(1000);
  }
}

await Promise.all([ingestLoop(), ingestLoop(), ...Array.from({ length: 20 }, socketChurn), sampler()]);
const exitCode = await gateway.stop("SIGTERM");

const third = Math.floor(samples.length / 3);
const floor = (list: Sample[]) => Math.min(...list.map((sample) => sample.heap));
const middleFloor = floor(samples.slice(third, 2 * third));
const lastFloor = floor(samples.slice(2 * third));
const middlePeak = Math.max(...samples.slice(third, 2 * third).map((sample) => sample.heap));
const limit = Math.max(middleFloor * 1.3 + 8 * 1024 * 1024, middlePeak);
const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
console.log(
  JSON.stringify({
    runtime,
    durationSec,
    requests,
    failures,
    delivered,
    samples: samples.length,
    heapMiddleFloorMiB: mib(middleFloor),
    heapLastFloorMiB: mib(lastFloor),
    heapMaxMiB: mib(Math.max(...samples.map((sample) => sample.heap))),
    rssFirstMiB: mib(samples[0]?.rss ?? 0),
    rssLastMiB: mib(samples.at(-1)?.rss ?? 0),
    exitCode,
  }),
);
// One line per check (scripts/test-all counts them). A heap that could not be read (NaN) fails:
// every comparison with NaN is false, which used to pass the growth check.
const validSamples =
  samples.length >= 6 && samples.every((sample) => Number.isFinite(sample.heap) && sample.heap > 0);
const checks: Array<[boolean, string]> = [
  [validSamples, `at least 6 heap samples, each a number (${samples.length} taken)`],
  [
    validSamples && lastFloor <= limit,
    `heap stopped growing: last floor ${mib(lastFloor)} MiB ≤ ${mib(limit)} MiB`,
  ],
  [requests > 0 && failures <= requests * 0.01, `at most 1% of requests failed (${failures} of ${requests})`],
  [delivered > 0, `events reached WebSocket clients (${delivered})`],
  [
    process.env.REDIS_URL !== undefined &&
      process.env.REDIS_URL !== "" &&
      samples.slice(third).every((sample) => sample.limiterDegraded === 0),
    "rate limits shared through REDIS_URL after warm-up (gateway_rate_limiter_degraded 0)",
  ],
  [exitCode === 0, `exit code 0 after SIGTERM (${exitCode})`],
];
for (const [ok, what] of checks) console.log(`check: ${ok ? "pass" : "fail"} soak on ${runtime}: ${what}`);
if (checks.some(([ok]) => !ok)) process.exit(1);
