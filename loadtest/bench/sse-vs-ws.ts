// Server-Sent Events against WebSockets on one gateway (embedded bus, limits
// off): N clients of one kind open over raw TCP (Bun.connect, so the client
// stays cheap), each on channel `x`, on a gateway of their own; the gateway's RSS growth per client is
// the memory per idle stream or socket (median of the last three quarters,
// as in fanout-client.ts). Then one publisher posts 10-event batches with
// channel `x` for DURATION_MS, keeping about two batches undelivered, and
// the clients count events in what they receive: deliveries/s and gateway
// CPU. Prints one JSON line per kind. Needs `bun run build` for node.
//
//   bun loadtest/bench/sse-vs-ws.ts node|bun [N=1000] [DURATION_MS=5000]
import { RUNTIMES, type Runtime, startGateway } from "../../test/e2e/harness.ts";
import { TEST_SECRET, token } from "../../test/support/tokens.ts";
import { cpuSeconds, statusBytes } from "./proc.ts";

const runtime = (process.argv[2] ?? "bun") as Runtime;
if (!RUNTIMES.includes(runtime)) throw new Error(`runtime: one of ${RUNTIMES.join(", ")}`);
const clients = Number(process.argv[3] ?? 1000);
const durationMs = Number(process.argv[4] ?? 5000);
const BATCH = 10;

const GATEWAY_ENV = {
  KAFKA_BROKERS: "",
  REDIS_URL: "",
  JWT_SECRET: TEST_SECRET,
  RATE_LIMIT_ENABLED: "false",
  WS_MAX_CONNECTIONS: "50000",
  WS_MAX_CONNECTIONS_PER_TENANT: "50000",
  LOG_LEVEL: "info",
};
const subscribeToken = await token("acme", ["subscribe"]);
const publishAuth = `Bearer ${await token("acme", ["ingest", "publish"])}`;
const body = JSON.stringify(
  Array.from({ length: BATCH }, (_, i) => ({ type: "click", channel: "x", data: { element: `b${i}` } })),
);
const EVENT_MARK = Buffer.from('"type":"event"');

/** Opens one client over raw TCP; `counter.events` grows by each event frame seen. */
async function open(port: number, kind: "sse" | "ws", counter: { events: number }): Promise<void> {
  let ready: () => void = () => {};
  const opened = new Promise<void>((resolve) => {
    ready = resolve;
  });
  let seenHeaders = false;
  let readyDone = false;
  await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      open(socket) {
        const request =
          kind === "sse"
            ? `GET /v1/sse?channel=x&token=${subscribeToken} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`
            : `GET /v1/ws?token=${subscribeToken} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`;
        socket.write(request);
      },
      data(socket, chunk) {
        const data = Buffer.from(chunk);
        if (!seenHeaders) {
          seenHeaders = true;
          if (kind === "ws") {
            // Subscribe once upgraded: a masked text frame.
            const payload = Buffer.from(JSON.stringify({ type: "subscribe", channel: "x" }));
            const mask = Buffer.from([1, 2, 3, 4]);
            const frame = Buffer.concat([
              Buffer.from([0x81, 0x80 | payload.length]),
              mask,
              payload.map((b, i) => b ^ (mask[i % 4] as number)),
            ]);
            socket.write(frame);
          } else ready();
        }
        if (kind === "ws" && !readyDone && data.includes('"type":"subscribed"')) {
          readyDone = true;
          ready();
        }
        let at = data.indexOf(EVENT_MARK);
        while (at >= 0) {
          counter.events++;
          at = data.indexOf(EVENT_MARK, at + EVENT_MARK.length);
        }
      },
    },
  });
  await opened;
}

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;

/** One gateway of its own per kind, so neither kind's deliveries count against the other. */
async function measure(kind: "sse" | "ws") {
  const gateway = await startGateway(runtime, GATEWAY_ENV);
  try {
    return await measureOn(gateway, kind);
  } finally {
    await gateway.stop("SIGKILL");
  }
}

async function measureOn(gateway: Awaited<ReturnType<typeof startGateway>>, kind: "sse" | "ws") {
  const port = Number(new URL(gateway.url).port);
  const counter = { events: 0 };
  const pid = gateway.process.pid;
  const perQuarter: number[] = [];
  const quarter = Math.ceil(clients / 4);
  for (let q = 0; q < 4; q++) {
    const before = statusBytes(pid, "VmRSS");
    for (let i = 0; i < quarter; i += 100)
      await Promise.all(Array.from({ length: Math.min(100, quarter - i) }, () => open(port, kind, counter)));
    await Bun.sleep(300);
    if (q > 0) perQuarter.push((statusBytes(pid, "VmRSS") - before) / quarter);
  }
  const opened = quarter * 4;
  const cpuBefore = cpuSeconds(pid);
  const started = performance.now();
  let sent = 0;
  while (performance.now() - started < durationMs) {
    // About two batches undelivered at most.
    if ((sent - BATCH * 2) * opened > counter.events) {
      await Bun.sleep(1);
      continue;
    }
    const response = await fetch(`${gateway.url}/v1/events`, {
      method: "POST",
      headers: { authorization: publishAuth, "content-type": "application/json" },
      body,
    });
    await response.arrayBuffer();
    sent += BATCH;
  }
  const seconds = (performance.now() - started) / 1000;
  const cpu = cpuSeconds(pid) - cpuBefore;
  return {
    runtime,
    kind,
    clients: opened,
    deliveriesPerSecond: Math.round(counter.events / seconds),
    gatewayCpuSeconds: Number(cpu.toFixed(2)),
    deliveriesPerCpuSecond: Math.round(counter.events / cpu),
    kibPerIdleClient: Number((median(perQuarter) / 1024).toFixed(1)),
    kibPerQuarter: perQuarter.map((b) => Number((b / 1024).toFixed(1))),
  };
}

console.log(JSON.stringify(await measure("ws")));
console.log(JSON.stringify(await measure("sse")));
