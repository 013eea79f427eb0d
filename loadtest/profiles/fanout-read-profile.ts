// A CPU profile of the gateway over bench/fanout-read.ts's read round: a
// producer writes N fan-out records (1,000 channels of one tenant) straight
// to the topic while the gateway has no subscriber but one sentinel socket.
// The gateway runs alone under `--cpu-prof` and stops with SIGTERM once the
// sentinel record has arrived, so the profile holds the round whole (and
// the start-up before it). Then: `bun loadtest/profiles/top.ts FILE N SECONDS`
// with the seconds printed at the end, for the round alone.
//
//   bun loadtest/profiles/fanout-read-profile.ts node|bun [N=300000] [DIR=dist/profiles|none]
//
// NODE_FLAGS adds flags to node's command line (e.g. `--trace-gc`, its output then on stdout).
import { spawn } from "node:child_process";
import { once } from "node:events";
import { Producer, stringSerializers } from "@platformatic/kafka";
import { TestSocket } from "../../test/e2e/harness.ts";
import { createTopic, services } from "../../test/support/kafka.ts";
import { TEST_SECRET, token } from "../../test/support/tokens.ts";
import { cpuSeconds, threadCpuSeconds } from "../bench/proc.ts";

const [runtime = "node"] = process.argv.slice(2);
const messages = Number(process.argv[3] ?? 300_000);
const dir = process.argv[4] ?? "dist/profiles";
const ROOT = new URL("../..", import.meta.url).pathname;
const BATCH = 1000;
const PAD = "x".repeat(80);
const port = 20_000 + Math.floor(Math.random() * 1000);

const fanoutTopic = await createTopic("profile-fanout-read");
// DIR `none`: no profile, only the CPU per thread (the profiler's own thread costs some).
const profile = dir === "none" ? [] : ["--cpu-prof", `--cpu-prof-dir=${dir}`];
const args =
  runtime === "bun"
    ? [...profile, "src/main.ts"]
    : ["--max-semi-space-size=64", ...(process.env.NODE_FLAGS?.split(" ") ?? []), ...profile, "dist/main.js"];
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
    KAFKA_TOPIC: await createTopic("profile-fanout-read-events"),
    KAFKA_FANOUT_TOPIC: fanoutTopic,
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

const producer = new Producer({
  clientId: "profile-fanout-read",
  bootstrapBrokers: services().brokers.split(","),
  serializers: stringSerializers,
  acks: 1,
});
const socket = new TestSocket(`ws://127.0.0.1:${port}/v1/ws?token=${await token("acme", ["subscribe"])}`);
await socket.next((frame) => frame.type === "connected");
socket.send({ type: "subscribe", channel: "sentinel" });
await socket.next((frame) => frame.type === "subscribed");

function record(n: number, channel: string) {
  return {
    topic: fanoutTopic,
    key: `acme/${channel}`,
    value: `{"n":${n},"pad":"${PAD}"}`,
    headers: { tenant: "acme", channel, ts: String(Date.now()), "content-type": "application/json" },
  };
}
/** Writes `count` records over 1,000 channels, then one to the sentinel channel, and waits for it at the socket. */
async function round(count: number, mark: number): Promise<void> {
  for (let sent = 0; sent < count; sent += BATCH) {
    const size = Math.min(BATCH, count - sent);
    await producer.send({
      messages: Array.from({ length: size }, (_, i) => record(sent + i, `c${(sent + i) % 1000}`)),
    });
  }
  await producer.send({ messages: [record(mark, "sentinel")] });
  await socket.next((frame) => frame.type === "event" && (frame.data as { n: number }).n === mark, 120_000);
}

// As in the benchmark, a first round warms the reader up (compiled code) before the one measured.
await round(20_000, -1);
const pid = child.pid as number;
const outputBefore = output.length;
const threadsBefore = threadCpuSeconds(pid);
const cpuBefore = cpuSeconds(pid);
const started = performance.now();
await round(messages, -2);
const seconds = (performance.now() - started) / 1000;
// What NODE_FLAGS had the runtime print over the round (lines that are not the gateway's JSON log).
for (const line of output.slice(outputBefore).split("\n"))
  if (line && !line.startsWith("{")) console.log(line);
const cpu = cpuSeconds(pid) - cpuBefore;
// Where the process's CPU went: the main thread (what the profile samples) and the runtime's helpers.
const threads = [...threadCpuSeconds(pid)]
  .map(([name, { user, system }]) => {
    const before = threadsBefore.get(name) ?? { user: 0, system: 0 };
    return [name, user - before.user, system - before.system] as const;
  })
  .filter(([, user, system]) => user + system > 0)
  .map(([name, user, system]) => `${name} ${user.toFixed(2)} user + ${system.toFixed(2)} system`);
console.log(
  `${runtime}: round CPU ${cpu.toFixed(2)} s (${((cpu / messages) * 1e6).toFixed(2)} µs per record): ${threads.join(", ")}`,
);
socket.close();
await producer.close();
const stopping = performance.now();
child.kill("SIGTERM");
await once(child, "exit");
// The round is the profile's last seconds but for the drain: `top.ts FILE N <this>` shows it alone.
const last = seconds + (performance.now() - stopping) / 1000;
console.log(
  `${runtime}: ${messages} fan-out records read in ${seconds.toFixed(1)} s; profile in ${dir}; its last ${last.toFixed(1)} s hold the round`,
);
