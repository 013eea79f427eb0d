// Rate limits on ÷ off, both at once (issue 17, target 1): two gateways of one runtime, one
// with Redis-backed limits (budgets of 10^8/s: the limiter's cost, nothing refused) and one
// without, each saturated by its own wrk over the same seconds, so whatever else loads the
// machine loads both; each one's events per CPU-second (utime + stime from /proc), and their ratio.
//
//   bun loadtest/profiles/limits-ab.ts node|bun [seconds] [rounds]
//   MEASURE_REDIS_URL=redis://host:port (required)   MEASURE_KAFKA_BROKERS=host:port: Kafka sink (acks=all)
//   EVENTS=1|100   events per request (default 1)     CONNECTIONS=64   per wrk
//   OLD_ROOT=/path   instead: limits on in both, the gateway of that checkout (`git archive` of an older
//                    commit, node_modules linked, `bun run build` there for Node) against this one's: an
//                    A/B of a change under the same load ("off" is the old tree, "on" this one)
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { signDevToken } from "../../src/infra/auth/dev-token.ts";

const ROOT = join(import.meta.dir, "../..");
const runtime = process.argv[2] ?? "node";
const seconds = Number(process.argv[3] ?? 4);
const rounds = Number(process.argv[4] ?? 5);
const events = Number(process.env.EVENTS ?? 1);
const connections = Number(process.env.CONNECTIONS ?? 64);
const redisUrl = process.env.MEASURE_REDIS_URL;
if (!redisUrl) throw new Error("MEASURE_REDIS_URL is required");
const TICKS = 100;
const oldRoot = process.env.OLD_ROOT;

const secret = `limits-ab-${crypto.randomUUID()}-${crypto.randomUUID()}`;
const token = await signDevToken({ secret, tenant: "bench", scopes: ["ingest"], ttlSec: 3600 });

interface Gateway {
  name: "off" | "on";
  port: number;
  child: ReturnType<typeof Bun.spawn>;
  logDir: string;
}

function start(name: "off" | "on", port: number): Gateway {
  const logDir = mkdtempSync(join(tmpdir(), `limits-ab-${name}-`));
  const command =
    runtime === "bun" ? ["bun", "src/main.ts"] : ["node", "--max-semi-space-size=64", "dist/main.js"];
  const child = Bun.spawn(command, {
    cwd: oldRoot !== undefined && name === "off" ? oldRoot : ROOT,
    env: {
      ...process.env,
      HOST: "127.0.0.1",
      PORT: String(port),
      JWT_SECRET: secret,
      DEV_MODE: "false",
      LOG_LEVEL: "warn",
      RATE_LIMIT_ENABLED: name === "on" || oldRoot !== undefined ? "true" : "false",
      REDIS_URL: name === "on" || oldRoot !== undefined ? redisUrl : "",
      RATE_LIMIT_EVENTS_PER_SEC: "100000000",
      RATE_LIMIT_REQUESTS_PER_SEC: "100000000",
      KAFKA_BROKERS: process.env.MEASURE_KAFKA_BROKERS ?? "",
      LOCAL_LOG_DIR: logDir,
      DRAIN_DELAY_MS: "0",
    },
    stdout: "inherit",
    stderr: "inherit",
  });
  return { name, port, child, logDir };
}

function cpuSeconds(pid: number): number {
  const text = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS;
}

/** One wrk per gateway, started together; resolves with each one's requests. */
async function drive(gateways: Gateway[], duration: number): Promise<number[]> {
  const runs = gateways.map((gateway) =>
    Bun.spawn(
      [
        "wrk",
        "-t1",
        `-c${connections}`,
        `-d${duration}s`,
        "-s",
        join(import.meta.dir, "../bench/post.lua"),
        `http://127.0.0.1:${gateway.port}/v1/events`,
      ],
      { env: { ...process.env, EVENTS: String(events), BENCH_TOKEN: token }, stdout: "pipe", stderr: "pipe" },
    ),
  );
  return Promise.all(
    runs.map(async (run) => {
      const text = await new Response(run.stdout).text();
      const line = text.split("\n").find((l) => l.startsWith("wrk-result "));
      if (!line) throw new Error(`wrk failed: ${text}`);
      const result = JSON.parse(line.slice("wrk-result ".length)) as { requests: number; non2xx: number };
      if (result.non2xx > 0) throw new Error(`${result.non2xx} answers were not 2xx`);
      return result.requests;
    }),
  );
}

const base = 19_000 + Math.floor(Math.random() * 900);
const gateways = [start("off", base), start("on", base + 1)];
try {
  for (const gateway of gateways) {
    for (let i = 0; ; i++) {
      const up = await fetch(`http://127.0.0.1:${gateway.port}/health`).then(
        (r) => r.ok,
        () => false,
      );
      if (up) break;
      if (i > 100) throw new Error(`${gateway.name} did not start`);
      await Bun.sleep(100);
    }
  }
  await drive(gateways, 1); // warm-up
  const [a, b] = oldRoot === undefined ? ["off", "on"] : ["old", "new"];
  console.log(
    `| ${runtime}, ${events} event(s) per request | ${a} req/s | ${b} req/s | ${a} events / CPU-s | ${b} events / CPU-s | ${b} ÷ ${a} |`,
  );
  console.log("|---|---:|---:|---:|---:|---:|");
  const ratios: number[] = [];
  for (let round = 1; round <= rounds; round++) {
    const before = gateways.map((gateway) => cpuSeconds(gateway.child.pid));
    const requests = await drive(gateways, seconds);
    const cpu = gateways.map((gateway, i) => cpuSeconds(gateway.child.pid) - (before[i] as number));
    const perCpu = requests.map((count, i) => (count * events) / (cpu[i] as number));
    const ratio = (perCpu[1] as number) / (perCpu[0] as number);
    ratios.push(ratio);
    console.log(
      `| round ${round} | ${Math.round((requests[0] as number) / seconds)} | ${Math.round((requests[1] as number) / seconds)} | ${Math.round(perCpu[0] as number)} | ${Math.round(perCpu[1] as number)} | ${ratio.toFixed(3)} |`,
    );
  }
  const sorted = [...ratios].sort((a, b) => a - b);
  console.log(`\nmedian ${b} ÷ ${a}: ${(sorted[Math.floor(sorted.length / 2)] as number).toFixed(3)}`);
} finally {
  for (const gateway of gateways) gateway.child.kill("SIGTERM");
  for (const gateway of gateways) {
    await gateway.child.exited;
    rmSync(gateway.logDir, { recursive: true, force: true });
  }
}
