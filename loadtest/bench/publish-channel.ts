// What a channel costs the publishing side: gateway CPU per event for 100-event
// batches POSTed to /v1/events through Kafka, records without a channel against
// the same records with one (each then also written to the fan-out topic and
// read back by this instance, which has no subscriber). The cases alternate
// ROUNDS times in one run; the median µs per event of each is printed with
// their ratio. Needs the services (`eval "$(scripts/services env)"`) and, for
// node, `bun run build`.
//
//   bun loadtest/bench/publish-channel.ts node|bun [REQUESTS=2000] [ROUNDS=3]
// GATEWAY_ROOT=/path/to/another/checkout/ runs that checkout's gateway (built there) instead.
import { RUNTIMES, type Runtime, startGateway, waitForLog } from "../../test/e2e/harness.ts";
import { createTopic, services } from "../../test/support/kafka.ts";
import { TEST_SECRET, token } from "../../test/support/tokens.ts";
import { cpuSeconds } from "./proc.ts";

const runtime = (process.argv[2] ?? "bun") as Runtime;
if (!RUNTIMES.includes(runtime)) throw new Error(`runtime: one of ${RUNTIMES.join(", ")}`);
const requests = Number(process.argv[3] ?? 2000);
const rounds = Number(process.argv[4] ?? 3);
const BATCH = 100;
const CONCURRENCY = 16;

const root = process.env.GATEWAY_ROOT;
const gateway = await startGateway(
  runtime,
  {
    KAFKA_BROKERS: services().brokers,
    KAFKA_TOPIC: await createTopic("bench-publish-channel-events"),
    KAFKA_FANOUT_TOPIC: await createTopic("bench-publish-channel-fanout"),
    JWT_SECRET: TEST_SECRET,
    RATE_LIMIT_ENABLED: "false",
    LOG_LEVEL: "info",
  },
  root === undefined ? undefined : `${root.replace(/\/$/, "")}/`,
);
const authorization = `Bearer ${await token("acme", ["ingest", "publish"])}`;
const body = (channel: boolean) =>
  JSON.stringify(
    Array.from({ length: BATCH }, (_, i) => ({
      type: "click",
      ...(channel ? { channel: `c${i % 10}` } : {}),
      data: { element: `button-${i}`, pad: "x".repeat(80) },
    })),
  );
const bodies = { plain: body(false), channel: body(true) };

/** `count` requests, CONCURRENCY at a time; answers gateway µs of CPU per event. */
async function run(kind: keyof typeof bodies, count: number): Promise<number> {
  const before = cpuSeconds(gateway.process.pid);
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < count) {
        const response = await fetch(`${gateway.url}/v1/events`, {
          method: "POST",
          headers: { authorization, "content-type": "application/json" },
          body: bodies[kind],
        });
        if (response.status !== 202)
          throw new Error(`${kind}: ${response.status} ${(await response.text()).slice(0, 300)}`);
        await response.arrayBuffer();
      }
    }),
  );
  // The fan-out topic is read back a moment later: its cost belongs to this case.
  await Bun.sleep(1000);
  return ((cpuSeconds(gateway.process.pid) - before) / (count * BATCH)) * 1e6;
}

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
try {
  await waitForLog(gateway, "fan-out consumer reading");
  await run("plain", requests / 4);
  await run("channel", requests / 4);
  const results = { plain: [] as number[], channel: [] as number[] };
  for (let round = 0; round < rounds; round++) {
    results.plain.push(await run("plain", requests));
    results.channel.push(await run("channel", requests));
  }
  const plain = median(results.plain);
  const channel = median(results.channel);
  console.log(
    JSON.stringify({
      runtime,
      ...(root === undefined ? {} : { root }),
      eventsPerCase: requests * BATCH,
      microsecondsPerEvent: { plain: Number(plain.toFixed(2)), channel: Number(channel.toFixed(2)) },
      rounds: results,
      channelOverPlain: Number((channel / plain).toFixed(2)),
    }),
  );
} finally {
  await gateway.stop("SIGKILL");
}
