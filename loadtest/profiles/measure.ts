// Ingest hot path, measured: starts the gateway (embedded sink, rate limits
// off unless MEASURE_REDIS_URL), drives it with wrk for each case and prints req/s, events/s and the
// gateway's own CPU per event (utime + stime from /proc/PID/stat, so wrk's
// share does not count).
//
//   bun loadtest/profiles/measure.ts node|bun [seconds]
//   PROFILE=node|bun   runs that runtime with --cpu-prof (profiles in dist/profiles/)
//   CASES=one-none,batch-ack   picks cases
//   CONNECTIONS=256   wrk's connections (default 64; `bun run bench` drives the one-event cases with 256)
//   MEASURE_REDIS_URL=redis://host:port   rate limits on, shared through that Redis (budgets of 10^8/s:
//                                     the limiter's cost, no refusals), for an A/B against limits off;
//   MEASURE_KAFKA_BROKERS=host:port   Kafka sink (acks=all) instead of the embedded log;
//   KAFKA_COMPRESSION etc. pass through from the environment
//   FLOOR=1   then runs loadtest/bench/floor.mjs on the same runtime (JSON.parse + ajv of the same
//             events, issue 17 target 3) and prints each case's events per gateway CPU-second ÷ that floor
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { signDevToken } from "../../src/infra/auth/dev-token.ts";

// GATEWAY_ROOT: measure another checkout (e.g. `git archive` of an older commit) with this script.
const ROOT = process.env.GATEWAY_ROOT ?? join(import.meta.dir, "../..");
const runtime = process.argv[2] ?? "node";
const seconds = Number(process.argv[3] ?? 5);
const TICKS = 100;
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 64);
const CASES = [
  { id: "one-none", events: 1, query: "?ack=none" },
  { id: "one-ack", events: 1, query: "" },
  { id: "batch-none", events: 100, query: "?ack=none" },
  { id: "batch-ack", events: 100, query: "" },
].filter((c) => !process.env.CASES || process.env.CASES.split(",").includes(c.id));

const secret = `measure-${crypto.randomUUID()}-${crypto.randomUUID()}`;
const token = await signDevToken({ secret, tenant: "bench", scopes: ["ingest"], ttlSec: 3600 });
const logDir = mkdtempSync(join(tmpdir(), "measure-log-"));
const port = 19_000 + Math.floor(Math.random() * 1000);
const profile = process.env.PROFILE === runtime;
const command =
  runtime === "bun"
    ? ["bun", ...(profile ? ["--cpu-prof", "--cpu-prof-dir=dist/profiles"] : []), "src/main.ts"]
    : [
        "node",
        "--max-semi-space-size=64",
        ...(profile ? ["--cpu-prof", "--cpu-prof-dir=dist/profiles"] : []),
        "dist/main.js",
      ];

const child = Bun.spawn(command, {
  cwd: ROOT,
  env: {
    ...process.env,
    HOST: "127.0.0.1",
    PORT: String(port),
    JWT_SECRET: secret,
    DEV_MODE: "false",
    LOG_LEVEL: "warn",
    RATE_LIMIT_ENABLED: process.env.MEASURE_REDIS_URL ? "true" : "false",
    REDIS_URL: process.env.MEASURE_REDIS_URL ?? "",
    RATE_LIMIT_EVENTS_PER_SEC: "100000000",
    RATE_LIMIT_REQUESTS_PER_SEC: "100000000",
    KAFKA_BROKERS: process.env.MEASURE_KAFKA_BROKERS ?? "",
    LOCAL_LOG_DIR: logDir,
    DRAIN_DELAY_MS: "0",
  },
  stdout: "inherit",
  stderr: "inherit",
});

function cpuSeconds(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

// CPU per thread, summed by thread name (/proc/PID/task/*/comm): the main thread
// (named after the runtime) against the runtime's helpers (GC, JIT, I/O). A
// thread that ended between two reads is missing from the later one.
function cpuByThread(pid: number): Map<string, number> {
  const byName = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const text = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
      const name = tid === String(pid) ? "main" : text.slice(text.indexOf("(") + 1, text.lastIndexOf(")"));
      byName.set(name, (byName.get(name) ?? 0) + (Number(fields[11]) + Number(fields[12])) / TICKS);
    } catch {
      // the thread ended
    }
  }
  return byName;
}

function threadShares(before: Map<string, number>, after: Map<string, number>, total: number): string {
  return [...after]
    .map(([name, cpu]) => [name, cpu - (before.get(name) ?? 0)] as const)
    .filter(([, cpu]) => cpu > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([name, cpu]) => `${name} ${((cpu / total) * 100).toFixed(1)}%`)
    .join(", ");
}

function wrk(
  events: number,
  query: string,
  duration: number,
): { requests: number; p50Us: number; p99Us: number; non2xx: number } {
  const run = Bun.spawnSync(
    [
      "wrk",
      "-t1",
      `-c${CONNECTIONS}`,
      `-d${duration}s`,
      "-s",
      join(import.meta.dir, "../bench/post.lua"),
      `http://127.0.0.1:${port}/v1/events${query}`,
    ],
    { env: { ...process.env, EVENTS: String(events), BENCH_TOKEN: token }, stdout: "pipe", stderr: "pipe" },
  );
  const line = run.stdout
    .toString()
    .split("\n")
    .find((l) => l.startsWith("wrk-result "));
  if (!line) throw new Error(`wrk failed: ${run.stdout}${run.stderr}`);
  return JSON.parse(line.slice("wrk-result ".length));
}

for (let i = 0; i < 100; i++) {
  const up = await fetch(`http://127.0.0.1:${port}/health`).then(
    (r) => r.ok,
    () => false,
  );
  if (up) break;
  await Bun.sleep(100);
}

try {
  console.log(`| ${runtime} case | req/s | events/s (2xx) | CPU-µs/event | p50 ms | p99 ms | non-2xx |`);
  console.log("|---|---:|---:|---:|---:|---:|---:|");
  const perCpuSecond: Array<{ id: string; events: number }> = [];
  const threadLines: string[] = [];
  for (const c of CASES) {
    wrk(c.events, c.query, 1); // warm-up
    const before = cpuSeconds(child.pid);
    const threadsBefore = cpuByThread(child.pid);
    const result = wrk(c.events, c.query, seconds);
    const cpu = cpuSeconds(child.pid) - before;
    threadLines.push(
      `${c.id}: ${threadShares(threadsBefore, cpuByThread(child.pid), cpu)} of the process's CPU`,
    );
    // Refused requests (503 when the local log falls behind with ?ack=none) did the parsing too.
    const events = result.requests * c.events;
    const landed = (result.requests - result.non2xx) * c.events;
    perCpuSecond.push({ id: c.id, events: landed / cpu });
    console.log(
      `| ${c.id} | ${Math.round(result.requests / seconds)} | ${Math.round(landed / seconds)} | ${((cpu * 1e6) / events).toFixed(2)} | ${(result.p50Us / 1000).toFixed(2)} | ${(result.p99Us / 1000).toFixed(2)} | ${result.non2xx} |`,
    );
  }
  console.log(`\nCPU by thread: ${threadLines.join("; ")}`);
  if (process.env.FLOOR === "1") {
    const run = Bun.spawnSync([runtime, join(import.meta.dir, "../bench/floor.mjs"), "2"], {
      cwd: ROOT,
      stdout: "pipe",
      stderr: "inherit",
    });
    const line = run.stdout
      .toString()
      .split("\n")
      .find((l) => l.startsWith("floor-result "));
    if (!line) throw new Error(`floor.mjs failed: ${run.stdout}`);
    const floor = JSON.parse(line.slice("floor-result ".length)) as { perEvent: number; perBody: number };
    console.log(
      `\nfloor (${runtime}): ${floor.perEvent} events/CPU-s parsed one by one, ${floor.perBody} as 100-event bodies`,
    );
    for (const { id, events } of perCpuSecond) {
      console.log(
        `${id}: ${Math.round(events)} accepted events / gateway CPU-s = ${(events / floor.perEvent).toFixed(3)} of the floor (${(events / floor.perBody).toFixed(3)} of the per-body floor)`,
      );
    }
  }
} finally {
  child.kill("SIGTERM");
  await child.exited;
  rmSync(logDir, { recursive: true, force: true });
}
