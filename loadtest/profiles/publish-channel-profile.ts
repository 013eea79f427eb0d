// A CPU profile of the gateway over one case of bench/publish-channel.ts:
// 100-event batches to POST /v1/events through Kafka, records with a channel
// or without. The gateway runs alone under `--cpu-prof` and stops with SIGTERM
// once the fan-out topic has been read back, so the profile holds the case
// whole. Then: `bun loadtest/profiles/top.ts FILE [N]` or `split.ts FILE`.
//
//   bun loadtest/profiles/publish-channel-profile.ts node|bun plain|channel [REQUESTS=1500] [DIR=dist/profiles]
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createTopic, services } from "../../test/support/kafka.ts";
import { TEST_SECRET, token } from "../../test/support/tokens.ts";

const [runtime = "node", kind = "channel"] = process.argv.slice(2);
const requests = Number(process.argv[4] ?? 1500);
const dir = process.argv[5] ?? "dist/profiles";
const ROOT = new URL("../..", import.meta.url).pathname;
const BATCH = 100;
const CONCURRENCY = 16;
const port = 20_000 + Math.floor(Math.random() * 1000);

const args =
  runtime === "bun"
    ? ["--cpu-prof", `--cpu-prof-dir=${dir}`, "src/main.ts"]
    : ["--max-semi-space-size=64", "--cpu-prof", `--cpu-prof-dir=${dir}`, "dist/main.js"];
const child = spawn(runtime === "bun" ? process.execPath : "node", args, {
  cwd: ROOT,
  stdio: ["ignore", "pipe", "inherit"],
  env: {
    ...process.env,
    HOST: "127.0.0.1",
    PORT: String(port),
    JWT_SECRET: TEST_SECRET,
    DRAIN_DELAY_MS: "0",
    RATE_LIMIT_ENABLED: "false",
    LOG_LEVEL: "info",
    KAFKA_BROKERS: services().brokers,
    KAFKA_TOPIC: await createTopic("profile-publish-channel-events"),
    KAFKA_FANOUT_TOPIC: await createTopic("profile-publish-channel-fanout"),
  },
});
let output = "";
child.stdout?.on("data", (chunk) => {
  output += chunk;
});
const deadline = Date.now() + 20_000;
while (!output.includes("fan-out consumer reading") || !output.includes('"listening"')) {
  if (Date.now() > deadline) throw new Error(`gateway did not start:\n${output}`);
  await Bun.sleep(50);
}

const authorization = `Bearer ${await token("acme", ["ingest", "publish"])}`;
const body = JSON.stringify(
  Array.from({ length: BATCH }, (_, i) => ({
    type: "click",
    ...(kind === "channel" ? { channel: `c${i % 10}` } : {}),
    data: { element: `button-${i}`, pad: "x".repeat(80) },
  })),
);
let next = 0;
await Promise.all(
  Array.from({ length: CONCURRENCY }, async () => {
    while (next++ < requests) {
      const response = await fetch(`http://127.0.0.1:${port}/v1/events`, {
        method: "POST",
        headers: { authorization, "content-type": "application/json" },
        body,
      });
      if (response.status !== 202) throw new Error(`${response.status} ${await response.text()}`);
      await response.arrayBuffer();
    }
  }),
);
await Bun.sleep(1000);
child.kill("SIGTERM");
await once(child, "exit");
console.log(`${runtime} ${kind}: ${requests * BATCH} events; profile in ${dir}`);
