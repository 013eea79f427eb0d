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
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Admin } from "@platformatic/kafka";
import type { Subprocess } from "bun";
import { signDevToken } from "../../src/infra/auth/dev-token.ts";
import { debianTreeCommand, debianTreeProblem } from "../../test/support/debian-tree.ts";
import { freePort } from "../../test/support/ports.ts";
import { killGroup, spawnGroup } from "../../test/support/processes.ts";
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
  youngCollections: number;
  /** Bytes each young-generation collection found alive there, on average. */
  survivedPerYoungCollection: number;
  /** Bytes they moved to the old generation, in all. */
  promoted: number;
  youngPauseMs: number;
  fullCollections: number;
  fullCollectionPauseMs: number;
}

export async function pacedGc(options: PacedGcOptions): Promise<PacedGcResult> {
  if (options.runtime === "node24") {
    const problem = debianTreeProblem();
    if (problem !== undefined)
      throw new Error(`node24: ${problem} (scripts/install-tools as root makes the tree)`);
  }
  const work = mkdtempSync(join(tmpdir(), "paced-gc-"));
  const topic = `paced-gc-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6)}`;
  const admin =
    options.brokers === ""
      ? undefined
      : new Admin({ clientId: "paced-gc", bootstrapBrokers: options.brokers.split(",") });
  let gateway: Subprocess | undefined;
  try {
    await admin?.createTopics({ topics: [topic], partitions: 6, replicas: 1 });
    const secret = `paced-gc-${crypto.randomUUID()}`;
    const token = await signDevToken({ secret, tenant: "bench", scopes: ["ingest"], ttlSec: 3600 });
    const port = await freePort();
    const nodeArgs = ["--max-semi-space-size=64", ...(options.flags ?? []), "--trace-gc-nvp", "dist/main.js"];
    const logPath = join(work, "gateway.log");
    // One descriptor for both streams (two opens of the file would write over each other), the child's own.
    const log = openSync(logPath, "a");
    // A process group of its own, as the e2e harness's gateways: a test runner that stops early kills it too.
    gateway = spawnGroup(options.runtime === "node24" ? debianTreeCommand(nodeArgs) : ["node", ...nodeArgs], {
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
      stdout: log,
      stderr: log,
    });
    closeSync(log);
    const deadline = Date.now() + 30_000;
    while (!readFileSync(logPath, "utf8").includes('"msg":"listening"')) {
      if (Date.now() > deadline || gateway.exitCode !== null)
        throw new Error(`the gateway did not start: ${readFileSync(logPath, "utf8").slice(-2000)}`);
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
    const warmedUpTo = readFileSync(logPath, "utf8").length;
    const measured = await paced(MEASURED_SEC);
    // The lines written after the warm-up (one being written at that moment counts with them).
    const written = readFileSync(logPath, "utf8");
    const lines = written.slice(written.lastIndexOf("\n", warmedUpTo - 1) + 1).split("\n");
    const field = (line: string, name: string) =>
      Number(new RegExp(`\\b${name}=([0-9.]+)`).exec(line)?.[1] ?? 0);
    const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);
    // Young-generation collections: scavenges (gc=s), or minor mark-sweeps with --minor-ms (mms; mmc before V8 12).
    const young = lines.filter((line) => / gc=(s|mms|mmc) /.test(line));
    const full = lines.filter((line) => line.includes(" gc=mc "));
    return {
      paced: measured,
      youngCollections: young.length,
      survivedPerYoungCollection:
        sum(young.map((line) => field(line, "new_space_survived"))) / (young.length || 1),
      promoted: sum(young.map((line) => field(line, "promoted"))),
      youngPauseMs: sum(young.map((line) => field(line, "pause"))),
      fullCollections: full.length,
      fullCollectionPauseMs: sum(full.map((line) => field(line, "pause"))),
    };
  } finally {
    if (gateway !== undefined) await killGroup(gateway);
    await admin?.deleteTopics({ topics: [topic] }).catch(() => {});
    await admin?.close();
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
    `  ${result.youngCollections} young-generation collections: survived ${mib(result.survivedPerYoungCollection)} MiB each on average, ` +
      `promoted ${mib(result.promoted)} MiB in all, pauses ${result.youngPauseMs.toFixed(0)} ms in all; ` +
      `${result.fullCollections} full collections, pauses ${result.fullCollectionPauseMs.toFixed(0)} ms in all`,
  );
}
