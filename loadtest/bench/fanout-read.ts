// What one instance spends reading the fan-out topic: CPU seconds of a
// gateway with no subscriber (but one sentinel socket) while a producer
// writes N fan-out records, 1,000 channels of one tenant, straight to the
// topic. Then, unless R is 0, a replay from the topic: R events of one
// channel, older than the in-memory history, resumed by one socket (time to
// caught-up and gateway CPU). Needs the services (`eval "$(scripts/services env)"`)
// and, for node, `bun run build`.
//
//   bun loadtest/bench/fanout-read.ts node|bun [N=200000] [R=100000] [ROOT...]
//
// Each ROOT (another checkout, built for node, e.g. `git archive REV | tar -x`
// with this node_modules linked in) runs a gateway of its own beside this
// one, reading the same records at the same time with a sentinel socket of
// its own: their read costs are compared within one run. The replay runs
// on this checkout's gateway only.
import { Producer, stringSerializers } from "@platformatic/kafka";
import { RUNTIMES, type Runtime, startGateway, TestSocket, waitForLog } from "../../test/e2e/harness.ts";
import { createTopic, services } from "../../test/support/kafka.ts";
import { token } from "../../test/support/tokens.ts";
import { cpuSeconds } from "./proc.ts";

const runtime = (process.argv[2] ?? "bun") as Runtime;
if (!RUNTIMES.includes(runtime)) throw new Error(`runtime: one of ${RUNTIMES.join(", ")}`);
const messages = Number(process.argv[3] ?? 200_000);
const replayed = Number(process.argv[4] ?? 100_000);
const roots = process.argv.slice(5).map((root) => (root.endsWith("/") ? root : `${root}/`));
const BATCH = 1000;
const PAD = "x".repeat(80);

const fanoutTopic = await createTopic("bench-fanout-read");
const env = {
  KAFKA_BROKERS: services().brokers,
  KAFKA_TOPIC: await createTopic("bench-fanout-read-events"),
  KAFKA_FANOUT_TOPIC: fanoutTopic,
  RATE_LIMIT_ENABLED: "false",
  LOG_LEVEL: "info",
};
const gateway = await startGateway(runtime, env);
const others = await Promise.all(roots.map((root) => startGateway(runtime, env, root)));
const producer = new Producer({
  clientId: "bench-fanout-read",
  bootstrapBrokers: services().brokers.split(","),
  serializers: stringSerializers,
  acks: 1,
});

function record(n: number, channel: string) {
  return {
    topic: fanoutTopic,
    key: `acme/${channel}`,
    value: `{"n":${n},"pad":"${PAD}"}`,
    headers: { tenant: "acme", channel, ts: String(Date.now()), "content-type": "application/json" },
  };
}

/** Writes `count` records (over 1,000 channels, or all to `channel`), then one to the sentinel channel, and waits for it to arrive at every socket. */
async function round(sockets: TestSocket[], count: number, mark: number, channel?: string): Promise<void> {
  for (let sent = 0; sent < count; sent += BATCH) {
    const size = Math.min(BATCH, count - sent);
    await producer.send({
      messages: Array.from({ length: size }, (_, i) => record(sent + i, channel ?? `c${(sent + i) % 1000}`)),
    });
  }
  await producer.send({ messages: [record(mark, "sentinel")] });
  await Promise.all(
    sockets.map((socket) =>
      socket.next((frame) => frame.type === "event" && (frame.data as { n: number }).n === mark, 120_000),
    ),
  );
}

/** R events of channel `big` written while nobody watched it, then resumed from before the first by a new socket. */
async function replay(socket: TestSocket) {
  socket.send({ type: "subscribe", channel: "big" });
  await socket.next((frame) => frame.type === "subscribed");
  await producer.send({ messages: [record(-3, "big")] });
  const since = (await socket.next((frame) => frame.type === "event" && frame.channel === "big"))
    .id as string;
  socket.send({ type: "unsubscribe", channel: "big" });
  await socket.next((frame) => frame.type === "unsubscribed");
  await round([socket], replayed, -4, "big");

  const reader = new TestSocket(`${gateway.wsUrl}?token=${await token("acme", ["subscribe"])}`);
  await reader.next((frame) => frame.type === "connected");
  const pid = gateway.process.pid;
  const before = cpuSeconds(pid);
  const started = performance.now();
  let received = 0;
  let cursor = since;
  let tryAgains = 0;
  while (received < replayed) {
    reader.send({ type: "subscribe", channel: "big", since: cursor });
    for (;;) {
      const frame = await reader.next(
        (f) =>
          f.type === "event" || (f.type === "error" && f.code === "try_again") || f.type === "subscribed",
        60_000,
      );
      if (frame.type === "event") {
        received++;
        cursor = frame.id as string;
        if (received === replayed) break;
      } else if (frame.type === "error") {
        tryAgains++;
        await Bun.sleep(frame.retryAfterMs as number);
        break;
      }
    }
    reader.frames.length = 0;
  }
  const cpu = cpuSeconds(pid) - before;
  reader.close();
  return {
    runtime,
    replayedEvents: replayed,
    secondsToCaughtUp: Number(((performance.now() - started) / 1000).toFixed(2)),
    gatewayCpuSeconds: Number(cpu.toFixed(2)),
    tryAgainRounds: tryAgains,
  };
}

/** A sentinel socket on `target`, subscribed to the sentinel channel. */
async function sentinel(target: typeof gateway): Promise<TestSocket> {
  await waitForLog(target, "fan-out consumer reading");
  const socket = new TestSocket(`${target.wsUrl}?token=${await token("acme", ["subscribe"])}`);
  await socket.next((frame) => frame.type === "connected");
  socket.send({ type: "subscribe", channel: "sentinel" });
  await socket.next((frame) => frame.type === "subscribed");
  return socket;
}

try {
  const gateways = [gateway, ...others];
  const sockets = await Promise.all(gateways.map(sentinel));
  await round(sockets, 20_000, -1);
  const before = gateways.map((target) => cpuSeconds(target.process.pid));
  const started = performance.now();
  await round(sockets, messages, -2);
  const seconds = (performance.now() - started) / 1000;
  gateways.forEach((target, i) => {
    const cpu = cpuSeconds(target.process.pid) - (before[i] as number);
    console.log(
      JSON.stringify({
        runtime,
        root: i === 0 ? "." : roots[i - 1],
        messages,
        gatewayCpuSeconds: Number(cpu.toFixed(2)),
        messagesPerCpuSecond: Math.round(messages / cpu),
        microsecondsPerMessage: Number(((cpu / messages) * 1e6).toFixed(2)),
        wallSeconds: Number(seconds.toFixed(1)),
      }),
    );
  });
  for (const socket of sockets.slice(1)) socket.close();
  if (replayed > 0) console.log(JSON.stringify(await replay(sockets[0] as TestSocket)));
  sockets[0]?.close();
} finally {
  await producer.close();
  await Promise.all([gateway, ...others].map((target) => target.stop("SIGKILL")));
}
