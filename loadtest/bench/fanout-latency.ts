// How long a fan-out record takes from the producer to a subscriber of a
// gateway reading it from Kafka: one socket per gateway subscribes to the
// `probe` channel; a producer writes records over 1,000 channels of one
// tenant straight to the fan-out topic, one in 100 (at least one per batch)
// to `probe` with its send time; the socket's receipt time minus it is the
// delivery latency (one clock: same process). Two phases: light (a 10-record
// batch every 10 ms for 5 s) and heavy (N records in 1,000-record batches
// back to back, as in fanout-read.ts's round). Needs the services and, for
// node, `bun run build`.
//
//   bun loadtest/bench/fanout-latency.ts node|bun [N=300000] [ROOT...]
//
// Each ROOT (another checkout, built) runs a gateway of its own beside this
// one, reading the same records at the same time: their latencies are
// compared within one run.
import { Producer, stringSerializers } from "@platformatic/kafka";
import { RUNTIMES, type Runtime, startGateway, waitForLog } from "../../test/e2e/harness.ts";
import { createTopic, services } from "../../test/support/kafka.ts";
import { token } from "../../test/support/tokens.ts";

const runtime = (process.argv[2] ?? "bun") as Runtime;
if (!RUNTIMES.includes(runtime)) throw new Error(`runtime: one of ${RUNTIMES.join(", ")}`);
const heavy = Number(process.argv[3] ?? 300_000);
const roots = process.argv.slice(4).map((root) => (root.endsWith("/") ? root : `${root}/`));
const PAD = "x".repeat(80);

const fanoutTopic = await createTopic("bench-fanout-latency");
const env = {
  KAFKA_BROKERS: services().brokers,
  KAFKA_TOPIC: await createTopic("bench-fanout-latency-events"),
  KAFKA_FANOUT_TOPIC: fanoutTopic,
  RATE_LIMIT_ENABLED: "false",
  LOG_LEVEL: "info",
};
const gateways = [
  await startGateway(runtime, env),
  ...(await Promise.all(roots.map((root) => startGateway(runtime, env, root)))),
];
const producer = new Producer({
  clientId: "bench-fanout-latency",
  bootstrapBrokers: services().brokers.split(","),
  serializers: stringSerializers,
  acks: 1,
});

/** A socket subscribed to `probe`; `latencies` collects each probe's delivery time (ms) while `collecting`. */
async function probe(wsUrl: string) {
  const latencies: number[] = [];
  const socket = new WebSocket(`${wsUrl}?token=${await token("acme", ["subscribe"])}`);
  let last = Number.NaN;
  const subscribed = new Promise<void>((resolve) => {
    socket.onmessage = (event) => {
      const frame = JSON.parse(String(event.data)) as { type: string; data?: { t?: number; n: number } };
      if (frame.type === "connected") socket.send(JSON.stringify({ type: "subscribe", channel: "probe" }));
      else if (frame.type === "subscribed") resolve();
      else if (frame.type === "event" && frame.data) {
        if (frame.data.t !== undefined) latencies.push(performance.now() - frame.data.t);
        last = frame.data.n;
      }
    };
  });
  await subscribed;
  return { socket, latencies, last: () => last };
}

function record(n: number, channel: string, sent?: number) {
  return {
    topic: fanoutTopic,
    key: `acme/${channel}`,
    value: sent === undefined ? `{"n":${n},"pad":"${PAD}"}` : `{"n":${n},"t":${sent},"pad":"${PAD}"}`,
    headers: { tenant: "acme", channel, ts: String(Date.now()), "content-type": "application/json" },
  };
}

/** One batch of `size` records from `n` on, one in 100 (and the first) to `probe`. */
function batch(n: number, size: number) {
  const sent = performance.now();
  return Array.from({ length: size }, (_, i) =>
    (n + i) % 100 === 0 || i === 0 ? record(n + i, "probe", sent) : record(n + i, `c${(n + i) % 1000}`),
  );
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? Number.NaN;
}

/** Runs `write`, then a last probe record, and waits for it at every socket; answers each socket's latencies. */
async function phase(
  name: string,
  probes: Awaited<ReturnType<typeof probe>>[],
  write: () => Promise<number>,
) {
  for (const p of probes) p.latencies.length = 0;
  const end = await write();
  await producer.send({ messages: [record(end, "probe")] });
  const deadline = Date.now() + 60_000;
  while (probes.some((p) => p.last() !== end) && Date.now() < deadline) await Bun.sleep(20);
  probes.forEach((p, i) => {
    const sorted = [...p.latencies].sort((a, b) => a - b);
    console.log(
      JSON.stringify({
        runtime,
        root: i === 0 ? "." : roots[i - 1],
        phase: name,
        probes: sorted.length,
        p50Ms: Number(percentile(sorted, 50).toFixed(1)),
        p99Ms: Number(percentile(sorted, 99).toFixed(1)),
        maxMs: Number((sorted.at(-1) ?? Number.NaN).toFixed(1)),
      }),
    );
  });
}

try {
  await Promise.all(gateways.map((target) => waitForLog(target, "fan-out consumer reading")));
  const probes = await Promise.all(gateways.map((target) => probe(target.wsUrl)));
  // Warm-up: as fanout-read.ts, 20,000 records before anything is measured.
  await phase("warm-up", probes, async () => {
    for (let n = 0; n < 20_000; n += 1000) await producer.send({ messages: batch(n, 1000) });
    return 20_000;
  });
  await phase("light", probes, async () => {
    let n = 100_000;
    const until = performance.now() + 5000;
    while (performance.now() < until) {
      await producer.send({ messages: batch(n, 10) });
      n += 10;
      await Bun.sleep(10);
    }
    return n;
  });
  await phase("heavy", probes, async () => {
    for (let n = 1_000_000; n < 1_000_000 + heavy; n += 1000)
      await producer.send({ messages: batch(n, 1000) });
    return 1_000_000 + heavy;
  });
  for (const p of probes) p.socket.close();
} finally {
  await producer.close();
  await Promise.all(gateways.map((target) => target.stop("SIGKILL")));
}
