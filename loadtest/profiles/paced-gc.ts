// Tail latency and the young generation, one Node runtime at a time: starts the gateway (Node 20, or
// the node24 target chrooted into scripts/install-tools' Debian 13 tree) with Node flags of your
// choice, drives it with paced.ts at RATE 100-event requests a second (3 s warm-up, then 8 s
// measured), and prints paced.ts's summary with, from V8's --trace-gc-nvp lines of the measured
// seconds, what each scavenge found alive in the young generation and promoted, and how many full
// collections ran. Written for issue 17, target 4 on the node24 target (loadtest/RESULTS.md);
// test/e2e/node24.test.ts runs it.
//   eval "$(scripts/services env)"; bun run build
//   bun loadtest/profiles/paced-gc.ts node|node24 [RATE] [node flags...]
//   SINK=local: the embedded log instead of Kafka (KAFKA_BROKERS, acks=all)
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Admin } from "@platformatic/kafka";
import { signDevToken } from "../../src/infra/auth/dev-token.ts";
import { debianTreeCommand } from "../../test/support/debian-tree.ts";
import { freePort } from "../../test/support/ports.ts";
import { benchBody, type PacedResult, runPaced } from "../bench/paced.ts";

const ROOT = join(import.meta.dir, "../..");
const WARM_UP_SEC = 3;
const MEASURED_SEC = 8;

export interface PacedGcOptions {
  runtime: "node" | "node24";
  /** 100-event requests a second. */
  rate: number;
  /** Node's flags besides --max-semi-space-size=64 (the images') and --trace-gc-nvp. */
  flags?: string[];
  /** Kafka's bootstrap brokers; empty: the embedded log. */
  brokers: string;
}

export interface PacedGcResult {
  paced: PacedResult;
  scavenges: number;
  /** Bytes each scavenge found alive in the young generation, on average. */
  survivedPerScavenge: number;
  /** Bytes the scavenges moved to the old generation, in all. */
  promoted: number;
  scavengePauseMs: number;
  fullCollections: number;
  fullCollectionPauseMs: number;
}

export async function pacedGc(options: PacedGcOptions): Promise<PacedGcResult> {
  const work = mkdtempSync(join(tmpdir(), "paced-gc-"));
  const topic = `paced-gc-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6)}`;
  if (options.brokers !== "") {
    const admin = new Admin({ clientId: "paced-gc", bootstrapBrokers: options.brokers.split(",") });
    await admin.createTopics({ topics: [topic], partitions: 6, replicas: 1 });
    await admin.close();
  }
  const secret = `paced-gc-${crypto.randomUUID()}`;
  const token = await signDevToken({ secret, tenant: "bench", scopes: ["ingest"], ttlSec: 3600 });
  const port = await freePort();
  const nodeArgs = ["--max-semi-space-size=64", ...(options.flags ?? []), "--trace-gc-nvp", "dist/main.js"];
  const logPath = join(work, "gateway.log");
  const gateway = Bun.spawn(
    options.runtime === "node24" ? debianTreeCommand(nodeArgs) : ["node", ...nodeArgs],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        JWT_SECRET: secret,
        DEV_MODE: "false",
        RATE_LIMIT_ENABLED: "false",
        REDIS_URL: "",
        DRAIN_DELAY_MS: "0",
        KAFKA_BROKERS: options.brokers,
        KAFKA_TOPIC: topic,
        LOCAL_LOG_DIR: join(work, "events"),
        HOST: "127.0.0.1",
        PORT: String(port),
      },
      stdout: Bun.file(logPath),
      stderr: "ignore",
    },
  );
  try {
    const deadline = Date.now() + 30_000;
    while (!readFileSync(logPath, "utf8").includes('"msg":"listening"')) {
      if (Date.now() > deadline || gateway.exitCode !== null) throw new Error("the gateway did not start");
      await Bun.sleep(100);
    }
    const paced = async (durationSec: number) =>
      (
        await runPaced({
          host: "127.0.0.1",
          port,
          path: "/v1/events",
          headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
          body: benchBody(100),
          ratePerSec: options.rate,
          durationSec,
          connections: 256,
        })
      ).result;
    await paced(WARM_UP_SEC);
    const warmedLines = readFileSync(logPath, "utf8").split("\n").length;
    const measured = await paced(MEASURED_SEC);
    const lines = readFileSync(logPath, "utf8").split("\n").slice(warmedLines);
    const field = (line: string, name: string) =>
      Number(new RegExp(`\\b${name}=([0-9.]+)`).exec(line)?.[1] ?? 0);
    const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);
    const scavenges = lines.filter((line) => line.includes(" gc=s "));
    const full = lines.filter((line) => / gc=(mc|mmc) /.test(line));
    return {
      paced: measured,
      scavenges: scavenges.length,
      survivedPerScavenge:
        sum(scavenges.map((line) => field(line, "new_space_survived"))) / (scavenges.length || 1),
      promoted: sum(scavenges.map((line) => field(line, "promoted"))),
      scavengePauseMs: sum(scavenges.map((line) => field(line, "pause"))),
      fullCollections: full.length,
      fullCollectionPauseMs: sum(full.map((line) => field(line, "pause"))),
    };
  } finally {
    gateway.kill("SIGKILL");
    await gateway.exited;
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const [runtime = "node", rate = "800", ...flags] = process.argv.slice(2);
  if (runtime !== "node" && runtime !== "node24") throw new Error("runtime: node or node24");
  const brokers = process.env.SINK === "local" ? "" : (process.env.KAFKA_BROKERS ?? "");
  if (process.env.SINK !== "local" && brokers === "")
    throw new Error('KAFKA_BROKERS: eval "$(scripts/services env)", or SINK=local');
  const result = await pacedGc({ runtime, rate: Number(rate), flags, brokers });
  const { paced } = result;
  const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
  console.log(`${runtime} ${flags.join(" ")} ${brokers === "" ? "embedded log" : "Kafka"}, ${rate} req/s`);
  console.log(
    `  ${paced.completed} done (${paced.non2xx} non-2xx, ${paced.unfinished} unfinished), ` +
      `p50 ${paced.p50Ms.toFixed(2)} p99 ${paced.p99Ms.toFixed(2)} p99.9 ${paced.p999Ms.toFixed(2)} ms, ` +
      `send lag p99 ${paced.sendLagP99Ms.toFixed(2)} ms`,
  );
  console.log(
    `  ${result.scavenges} scavenges: survived ${mib(result.survivedPerScavenge)} MiB each on average, ` +
      `promoted ${mib(result.promoted)} MiB in all, pauses ${result.scavengePauseMs.toFixed(0)} ms in all; ` +
      `${result.fullCollections} full collections, pauses ${result.fullCollectionPauseMs.toFixed(0)} ms in all`,
  );
}
