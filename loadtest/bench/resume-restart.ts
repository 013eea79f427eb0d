// 1,000 subscribers resuming at once after an instance restart: SUBSCRIBERS
// sockets over CHANNELS channels see one event each, then the only instance
// stops (SIGTERM) while EVENTS events per channel are written to the fan-out
// topic, and a new instance starts; every socket reconnects at the same
// moment and subscribes with `since` = the last id it saw. A `try_again`
// (replay bounds) is honoured: wait `retryAfterMs`, resubscribe from the last
// event received. Prints the time from the first subscribe until every socket
// has every event once and in order, the try_again rounds, and the new
// instance's CPU over that time. Needs the services and, for node, `bun run build`.
//
//   bun loadtest/bench/resume-restart.ts node|bun [SUBSCRIBERS=1000] [CHANNELS=10] [EVENTS=100]
import { Producer, stringSerializers } from "@platformatic/kafka";
import { RUNTIMES, type Runtime, startGateway, waitForLog } from "../../test/e2e/harness.ts";
import { createTopic, services } from "../../test/support/kafka.ts";
import { TEST_SECRET, token } from "../../test/support/tokens.ts";
import { cpuSeconds } from "./proc.ts";

const runtime = (process.argv[2] ?? "bun") as Runtime;
if (!RUNTIMES.includes(runtime)) throw new Error(`runtime: one of ${RUNTIMES.join(", ")}`);
const subscribers = Number(process.argv[3] ?? 1000);
const channels = Number(process.argv[4] ?? 10);
const events = Number(process.argv[5] ?? 100);
const DEADLINE_MS = 120_000;

const fanoutTopic = await createTopic("bench-resume-restart");
const env = {
  KAFKA_BROKERS: services().brokers,
  KAFKA_TOPIC: await createTopic("bench-resume-restart-events"),
  KAFKA_FANOUT_TOPIC: fanoutTopic,
  JWT_SECRET: TEST_SECRET,
  RATE_LIMIT_ENABLED: "false",
  LOG_LEVEL: "info",
};
const producer = new Producer({
  clientId: "bench-resume-restart",
  bootstrapBrokers: services().brokers.split(","),
  serializers: stringSerializers,
  acks: 1,
});
const subscribeToken = await token("acme", ["subscribe"]);

const record = (channel: string, n: number) => ({
  topic: fanoutTopic,
  key: `acme/${channel}`,
  value: `{"n":${n}}`,
  headers: { tenant: "acme", channel, ts: String(Date.now()), "content-type": "application/json" },
});

/** One subscriber: its channel, the numbers it got in order, and the id of the last. */
interface Subscriber {
  channel: string;
  got: number[];
  lastId: string;
  socket?: WebSocket;
  done?: () => void;
}

/** Opens the subscriber's socket; `since` unset: a plain subscribe. Resolves once connected. */
function open(
  gatewayWs: string,
  subscriber: Subscriber,
  since: string | undefined,
  counts: { tryAgain: number },
) {
  return new Promise<void>((resolve, reject) => {
    const socket = new WebSocket(`${gatewayWs}?token=${subscribeToken}`);
    subscriber.socket = socket;
    const subscribe = () =>
      socket.send(
        JSON.stringify({ type: "subscribe", channel: subscriber.channel, since: since ?? undefined }),
      );
    socket.onerror = () => reject(new Error("socket failed"));
    socket.onmessage = (message) => {
      const frame = JSON.parse(String(message.data));
      if (frame.type === "connected") {
        subscribe();
        resolve();
      } else if (frame.type === "event") {
        subscriber.got.push(frame.data.n);
        subscriber.lastId = frame.id;
        since = frame.id;
        if (subscriber.got.length === events + 1) subscriber.done?.();
      } else if (frame.type === "error" && frame.code === "try_again") {
        counts.tryAgain++;
        setTimeout(subscribe, frame.retryAfterMs);
      } else if (frame.type === "error") reject(new Error(JSON.stringify(frame)));
    };
  });
}

let gateway = await startGateway(runtime, env);
try {
  await waitForLog(gateway, "fan-out consumer reading");
  const counts = { tryAgain: 0 };
  const all: Subscriber[] = Array.from({ length: subscribers }, (_, i) => ({
    channel: `r${i % channels}`,
    got: [],
    lastId: "",
  }));
  for (let i = 0; i < all.length; i += 100)
    await Promise.all(all.slice(i, i + 100).map((s) => open(gateway.wsUrl, s, undefined, counts)));
  const firstSeen = Promise.all(
    all.map(
      (s) =>
        new Promise<void>((resolve) => {
          s.done = resolve;
        }),
    ),
  );
  const seen = Promise.all(
    all.map(
      (s) =>
        new Promise<void>((resolve) => {
          const check = () => (s.got.length > 0 ? resolve() : setTimeout(check, 20));
          check();
        }),
    ),
  );
  await producer.send({ messages: Array.from({ length: channels }, (_, c) => record(`r${c}`, 0)) });
  await seen;
  for (const s of all) s.socket?.close();
  await gateway.stop("SIGTERM");
  for (let n = 1; n <= events; n++)
    await producer.send({ messages: Array.from({ length: channels }, (_, c) => record(`r${c}`, n)) });
  gateway = await startGateway(runtime, env);
  await waitForLog(gateway, "fan-out consumer reading");
  const before = cpuSeconds(gateway.process.pid);
  const started = performance.now();
  await Promise.all(all.map((s) => open(gateway.wsUrl, s, s.lastId, counts)));
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    firstSeen,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("not caught up within the deadline")), DEADLINE_MS);
    }),
  ]);
  clearTimeout(timer);
  const seconds = (performance.now() - started) / 1000;
  const cpu = cpuSeconds(gateway.process.pid) - before;
  const expected = Array.from({ length: events + 1 }, (_, n) => n);
  const exact = all.every(
    (s) => s.got.length === expected.length && s.got.every((n, i) => n === expected[i]),
  );
  console.log(
    JSON.stringify({
      runtime,
      subscribers,
      channels,
      eventsMissedPerChannel: events,
      everyEventOnceInOrder: exact,
      secondsToCaughtUp: Number(seconds.toFixed(2)),
      tryAgainRounds: counts.tryAgain,
      gatewayCpuSeconds: Number(cpu.toFixed(2)),
    }),
  );
  for (const s of all) s.socket?.close();
} finally {
  await producer.close();
  await gateway.stop("SIGKILL");
}
