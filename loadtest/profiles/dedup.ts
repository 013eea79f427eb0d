// Per-record deduplication on ÷ off, in one run: one gateway (Kafka sink,
// acks=all, REDIS_URL set, rate limits off so Redis serves only the record ids),
// two tenants that differ only in the tenant table's dedupWindowSec, driven in
// turns (off, on, off, on, …) by wrk with 100-record batches whose ids are all
// new (the case that claims, writes and confirms). Prints, per turn, the
// gateway's CPU per event (utime + stime from /proc, wrk's share excluded) and
// Redis's (INFO cpu: the shared server, so other sessions' commands count too).
//
//   eval "$(scripts/services env)"; bun run build
//   flock /tmp/bench.lock bun loadtest/profiles/dedup.ts node|bun [seconds per turn] [pairs]
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { signDevToken } from "../../src/infra/auth/dev-token.ts";

const ROOT = join(import.meta.dir, "../..");
const runtime = process.argv[2] ?? "node";
const seconds = Number(process.argv[3] ?? 3);
const pairs = Number(process.argv[4] ?? 3);
const EVENTS = 100;
const TICKS = 100;
const brokers = process.env.KAFKA_BROKERS;
const redisUrl = process.env.REDIS_URL;
if (!brokers || !redisUrl) throw new Error("needs KAFKA_BROKERS and REDIS_URL (eval scripts/services env)");

const run = Date.now().toString(36);
const tenants = { off: `bench-plain-${run}`, on: `bench-dedup-${run}` };
const folder = mkdtempSync(join(tmpdir(), "dedup-bench-"));
const table = join(folder, "tenants.json");
writeFileSync(table, JSON.stringify({ [tenants.on]: { dedupWindowSec: 600 } }));
const secret = `measure-${crypto.randomUUID()}-${crypto.randomUUID()}`;
const tokens = {
  off: await signDevToken({ secret, tenant: tenants.off, scopes: ["ingest"], ttlSec: 3600 }),
  on: await signDevToken({ secret, tenant: tenants.on, scopes: ["ingest"], ttlSec: 3600 }),
};
const port = 19_000 + Math.floor(Math.random() * 1000);
const child = Bun.spawn(
  runtime === "bun" ? ["bun", "src/main.ts"] : ["node", "--max-semi-space-size=64", "dist/main.js"],
  {
    cwd: ROOT,
    env: {
      ...process.env,
      HOST: "127.0.0.1",
      PORT: String(port),
      JWT_SECRET: secret,
      DEV_MODE: "false",
      LOG_LEVEL: "warn",
      RATE_LIMIT_ENABLED: "false",
      REDIS_URL: redisUrl,
      KAFKA_BROKERS: brokers,
      KAFKA_TOPIC: `bench-dedup-${run}`,
      TENANT_QUOTAS: table,
      DRAIN_DELAY_MS: "0",
    },
    stdout: "inherit",
    stderr: "inherit",
  },
);
const redis = new Redis(redisUrl);

function cpuSeconds(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

async function redisCpuSeconds(): Promise<number> {
  const info = await redis.info("cpu");
  const field = (name: string) => Number(new RegExp(`${name}:([0-9.]+)`).exec(info)?.[1] ?? 0);
  return field("used_cpu_sys") + field("used_cpu_user");
}

let turn = 0;
function wrk(
  token: string,
  duration: number,
): { requests: number; non2xx: number; p50Us: number; p99Us: number } {
  const result = Bun.spawnSync(
    [
      "wrk",
      "-t1",
      "-c32",
      `-d${duration}s`,
      "-s",
      join(import.meta.dir, "../bench/post-ids.lua"),
      `http://127.0.0.1:${port}/v1/events`,
    ],
    {
      env: { ...process.env, EVENTS: String(EVENTS), BENCH_TOKEN: token, ID_PREFIX: `${run}-${turn++}` },
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  const line = result.stdout
    .toString()
    .split("\n")
    .find((l) => l.startsWith("wrk-result "));
  if (!line) throw new Error(`wrk failed: ${result.stdout}${result.stderr}`);
  return JSON.parse(line.slice("wrk-result ".length));
}

for (let i = 0; i < 100; i++) {
  if (
    await fetch(`http://127.0.0.1:${port}/health`).then(
      (r) => r.ok,
      () => false,
    )
  )
    break;
  await Bun.sleep(100);
}

try {
  wrk(tokens.off, 1);
  wrk(tokens.on, 1);
  console.log(
    `| ${runtime} turn | dedup | events/s | gateway CPU-µs/event | Redis CPU-µs/event | p50 ms | p99 ms | non-2xx |`,
  );
  console.log("|---|---|---:|---:|---:|---:|---:|---:|");
  for (let pair = 1; pair <= pairs; pair++) {
    for (const mode of ["off", "on"] as const) {
      const gatewayBefore = cpuSeconds(child.pid);
      const redisBefore = await redisCpuSeconds();
      const result = wrk(tokens[mode], seconds);
      const gatewayCpu = cpuSeconds(child.pid) - gatewayBefore;
      const redisCpu = (await redisCpuSeconds()) - redisBefore;
      const events = result.requests * EVENTS;
      console.log(
        `| ${pair} | ${mode} | ${Math.round(events / seconds)} | ${((gatewayCpu * 1e6) / events).toFixed(2)} | ${((redisCpu * 1e6) / events).toFixed(2)} | ${(result.p50Us / 1000).toFixed(1)} | ${(result.p99Us / 1000).toFixed(1)} | ${result.non2xx} |`,
      );
    }
  }
} finally {
  redis.disconnect();
  child.kill("SIGTERM");
  await child.exited;
  rmSync(folder, { recursive: true, force: true });
}
