// Paced p99 of gateway variants through Kafka (acks=all), interleaved in one
// run: for each runtime and body, wrk saturates the first variant for a few
// seconds, then every variant (another checkout and/or other settings) runs
// ROUNDS times in turn under paced.ts at half that rate, each on a fresh
// gateway after a one-second paced warm-up. Prints one Markdown row per
// variant: p50 / p99 / p99.9 of the median round by p99, every round's p99,
// and the gateway's CPU share over the paced run.
//   KAFKA_BROKERS=host:port bun loadtest/bench/paced-ab.ts
//   VARIANTS='before=/tmp/ab-old:KAFKA_PRODUCERS=1;after=.:KAFKA_PRODUCERS=2'   label=root[:NAME=value,...]
//   RUNTIMES=node,bun EVENTS=1,100 KEYS=0 ROUNDS=3 DURATION=5 SATURATE=3
//   NODE_FLAGS in a variant's settings: Node's flags instead of --max-semi-space-size=64 (space-separated)
//   KEYS=N: request i's events carry record key k<i mod N> (0: no key, so the tenant: one partition)
//   RATE=N: pace at N requests/s instead of half the rate wrk saturates (a shared machine's saturating run is low)
//   DIAG=1: also one row per variant of where the time goes, from the gateway's /metrics scraped
//   around each paced round: event-loop delay p99 / max (prom-client's monitorEventLoopDelay, reset
//   per scrape), GC time share and pauses over 10 ms, produce round trip mean and the bucket holding
//   its p99, records per batch
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { signDevToken } from "../../src/infra/auth/dev-token.ts";
import { benchBody, runPaced } from "./paced.ts";

const ROOT = join(import.meta.dir, "../..");
const brokers = process.env.KAFKA_BROKERS;
if (!brokers) throw new Error("KAFKA_BROKERS is not set");
const list = (name: string, fallback: string) => (process.env[name] ?? fallback).split(",").filter(Boolean);
const runtimes = list("RUNTIMES", "node,bun");
const eventCounts = list("EVENTS", "1,100").map(Number);
const keys = Number(process.env.KEYS ?? 0);
const rounds = Number(process.env.ROUNDS ?? 3);
const durationSec = Number(process.env.DURATION ?? 5);
const saturateSec = Number(process.env.SATURATE ?? 3);
const diag = process.env.DIAG === "1";
/** `label=root[:NAME=value,...]`: a checkout (built) and the settings it runs with. */
function variant(spec: string): { label: string; root: string; env: Record<string, string> } {
  const at = spec.indexOf("=");
  const [root = ".", settings = ""] = spec.slice(at + 1).split(/:(.*)/s);
  const env: Record<string, string> = {};
  for (const pair of settings.split(",").filter(Boolean)) {
    env[pair.slice(0, pair.indexOf("="))] = pair.slice(pair.indexOf("=") + 1);
  }
  return { label: spec.slice(0, at), root: resolve(ROOT, root), env };
}
const variants = (process.env.VARIANTS ?? "current=.").split(";").map(variant);

const secret = `paced-ab-${crypto.randomUUID()}-${crypto.randomUUID()}`;
const token = await signDevToken({ secret, tenant: "bench", scopes: ["ingest"], ttlSec: 3600 });
const TICKS = 100;

function cpuSeconds(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

async function startGateway(runtime: string, root: string, env: Record<string, string>) {
  const port = 21_000 + Math.floor(Math.random() * 9000);
  const command =
    runtime === "bun"
      ? ["bun", "src/main.ts"]
      : ["node", ...(env.NODE_FLAGS ?? "--max-semi-space-size=64").split(" "), "dist/main.js"];
  const child = Bun.spawn(command, {
    cwd: root,
    env: {
      ...process.env,
      HOST: "127.0.0.1",
      PORT: String(port),
      JWT_SECRET: secret,
      DEV_MODE: "false",
      LOG_LEVEL: "warn",
      RATE_LIMIT_ENABLED: "false",
      REDIS_URL: "",
      KAFKA_BROKERS: brokers,
      KAFKA_TOPIC: "paced-ab",
      KAFKA_FANOUT_TOPIC: "paced-ab-fanout",
      DRAIN_DELAY_MS: "0",
      ...env,
    },
    stdout: "inherit",
    stderr: "inherit",
  });
  for (let i = 0; i < 300; i++) {
    const up = await fetch(`http://127.0.0.1:${port}/health`).then(
      (response) => response.ok,
      () => false,
    );
    if (up) return { child, port };
    await Bun.sleep(100);
  }
  child.kill("SIGKILL");
  throw new Error(`${runtime} gateway in ${root} did not start`);
}

function wrkRate(port: number, events: number): number {
  const run = Bun.spawnSync(
    [
      "wrk",
      "-t1",
      "-c64",
      `-d${saturateSec}s`,
      "-s",
      join(import.meta.dir, "post.lua"),
      `http://127.0.0.1:${port}/v1/events`,
    ],
    { env: { ...process.env, EVENTS: String(events), BENCH_TOKEN: token }, stdout: "pipe", stderr: "pipe" },
  );
  const line = run.stdout
    .toString()
    .split("\n")
    .find((each) => each.startsWith("wrk-result "));
  if (!line) throw new Error(`wrk failed: ${run.stdout}${run.stderr}`);
  return JSON.parse(line.slice("wrk-result ".length)).requests / saturateSec;
}

const bodies = (events: number) =>
  keys > 0 ? Array.from({ length: keys }, (_, i) => benchBody(events, `k${i}`)) : benchBody(events);

function paced(port: number, events: number, rate: number, seconds: number) {
  return runPaced({
    host: "127.0.0.1",
    port,
    path: "/v1/events",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: bodies(events),
    ratePerSec: rate,
    durationSec: seconds,
    connections: 256,
  });
}

/** Prometheus text as name{labels} -> value, summed over labels not given in `keep`. */
async function scrape(port: number): Promise<Map<string, number>> {
  const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((response) => response.text());
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    const series = line.slice(0, space);
    const le = /le="([^"]+)"/.exec(series)?.[1];
    const name = series.replace(/\{.*\}/, "") + (le === undefined ? "" : `@${le}`);
    values.set(name, (values.get(name) ?? 0) + Number(line.slice(space + 1)));
  }
  return values;
}

interface Diag {
  loopP99: number;
  loopMax: number;
  gcShare: number;
  gcOver10: number;
  produceMean: number;
  produceP99Le: number;
  recordsPerBatch: number;
}

function diagnose(before: Map<string, number>, after: Map<string, number>, seconds: number): Diag {
  const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
  const produced = delta("gateway_kafka_produce_duration_seconds_count");
  const buckets = [...after.keys()]
    .filter((name) => name.startsWith("gateway_kafka_produce_duration_seconds_bucket@"))
    .map((name) => ({ le: Number(name.split("@")[1]), count: delta(name) }))
    .sort((a, b) => a.le - b.le);
  return {
    loopP99: (after.get("nodejs_eventloop_lag_p99_seconds") ?? Number.NaN) * 1000,
    loopMax: (after.get("nodejs_eventloop_lag_max_seconds") ?? Number.NaN) * 1000,
    gcShare: delta("nodejs_gc_duration_seconds_sum") / seconds,
    gcOver10: delta("nodejs_gc_duration_seconds_count") - delta("nodejs_gc_duration_seconds_bucket@0.01"),
    produceMean: (delta("gateway_kafka_produce_duration_seconds_sum") / produced) * 1000,
    produceP99Le: (buckets.find((bucket) => bucket.count >= 0.99 * produced)?.le ?? Number.NaN) * 1000,
    recordsPerBatch: delta("gateway_kafka_batch_records_sum") / delta("gateway_kafka_batch_records_count"),
  };
}
const diags = new Map<string, Diag[]>();

const ms = (value: number) => value.toFixed(1);
console.log(
  `| runtime, body | variant | target req/s | p50 / p99 / p99.9 ms (median round) | p99 of rounds | gateway CPU | non-2xx |`,
);
console.log("|---|---|---:|---|---|---:|---:|");
for (const runtime of runtimes) {
  for (const events of eventCounts) {
    const first = variants[0] as (typeof variants)[number];
    let rate = Number(process.env.RATE ?? 0);
    if (!rate) {
      const saturating = await startGateway(runtime, first.root, first.env);
      wrkRate(saturating.port, events); // warm-up
      rate = Math.round(wrkRate(saturating.port, events) / 2);
      saturating.child.kill("SIGTERM");
      await saturating.child.exited;
    }
    const results = new Map(
      variants.map((variant) => [
        variant.label,
        [] as Array<{ p50: number; p99: number; p999: number; cpu: number; non2xx: number }>,
      ]),
    );
    for (let round = 0; round < rounds; round++) {
      for (const variant of variants) {
        const gateway = await startGateway(runtime, variant.root, variant.env);
        try {
          await paced(gateway.port, events, rate, 1);
          const metricsBefore = diag ? await scrape(gateway.port) : undefined;
          const cpuBefore = cpuSeconds(gateway.child.pid);
          const { result } = await paced(gateway.port, events, rate, durationSec);
          if (metricsBefore) {
            const key = `${runtime}, ${events}, ${variant.label}`;
            diags.set(key, [
              ...(diags.get(key) ?? []),
              diagnose(metricsBefore, await scrape(gateway.port), result.elapsedSec),
            ]);
          }
          const cpu = (cpuSeconds(gateway.child.pid) - cpuBefore) / result.elapsedSec;
          results.get(variant.label)?.push({
            p50: result.p50Ms,
            p99: result.p99Ms,
            p999: result.p999Ms,
            cpu,
            non2xx: result.non2xx + result.unfinished,
          });
        } finally {
          gateway.child.kill("SIGTERM");
          await gateway.child.exited;
        }
      }
    }
    for (const variant of variants) {
      const runs = results.get(variant.label) ?? [];
      const median = [...runs].sort((a, b) => a.p99 - b.p99)[Math.floor(runs.length / 2)];
      if (!median) continue;
      console.log(
        `| ${runtime}, ${events === 1 ? "one event" : `${events}-event batches`}${keys > 0 ? `, ${keys} keys` : ""} | ${variant.label} | ${rate} | ${ms(median.p50)} / ${ms(median.p99)} / ${ms(median.p999)} | ${runs.map((run) => ms(run.p99)).join(" ")} | ${Math.round(median.cpu * 100)}% | ${runs.reduce((sum, run) => sum + run.non2xx, 0)} |`,
      );
    }
  }
}
if (diag) {
  console.log(
    "\n| runtime, events | variant | event-loop delay p99 / max ms (rounds) | GC share, pauses > 10 ms | produce round trip mean ms, p99 ≤ | records per batch |",
  );
  console.log("|---|---|---|---|---|---:|");
  for (const [key, runs] of diags) {
    const [runtime, events, label] = key.split(", ");
    console.log(
      `| ${runtime}, ${events} | ${label} | ${runs.map((run) => `${ms(run.loopP99)} / ${ms(run.loopMax)}`).join(", ")} | ${runs.map((run) => `${(run.gcShare * 100).toFixed(1)}% ${run.gcOver10}`).join(", ")} | ${runs.map((run) => `${ms(run.produceMean)} ≤${run.produceP99Le}`).join(", ")} | ${runs.map((run) => Math.round(run.recordsPerBatch)).join(" ")} |`,
    );
  }
}
