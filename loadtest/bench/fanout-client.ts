// Fan-out load for the benchmark (started by bench.ts against one gateway with
// the embedded bus): SUBSCRIBERS WebSockets subscribe to one channel, then two
// publishers in this process post FANOUT_BATCH-event batches with that channel
// to POST /v1/events for DURATION_MS; each event reaches every subscriber. The
// publishers keep about two batches undelivered (counted at the subscribers),
// so the run saturates the path without piling frames up in the gateway.
//
// The subscribers speak WebSocket over raw TCP (Bun.connect) and count frames
// per TCP chunk: a WebSocket object costs a JavaScript event per frame, which
// made this client, not the gateway, the limit. One socket in SAMPLE_EVERY
// decodes its frames for the delivery latency (publish call to receipt, one
// clock: same process). Prints one JSON line with deliveries/s, latency, the
// gateway's CPU over the window (/proc/GATEWAY_PID), this client's CPU, and
// the gateway's RSS per idle subscribed socket: the sockets connect in four
// quarters; the RSS growth per socket of the last three quarters, median (the
// first quarter absorbs one-time costs, code paths compiled; the median drops
// the one quarter in which the runtime may grow its heap or young generation,
// a fixed step that is not the sockets' cost). Before the sockets connect, the
// gateway ingests for WARMUP_MS, as it would in service, so its heap and young
// generation have their working size. Every phase has a deadline.
import { cpuSeconds, machineTicks, statusBytes } from "./proc.ts";

const env = (name: string) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
};
const url = new URL(env("GATEWAY_URL"));
const ingestToken = env("INGEST_TOKEN");
const subscribeToken = env("SUBSCRIBE_TOKEN");
const gatewayPid = Number(env("GATEWAY_PID"));
const subscribers = Number(process.env.SUBSCRIBERS ?? 1000);
const durationMs = Number(process.env.DURATION_MS ?? 5000);
const batch = Number(process.env.FANOUT_BATCH ?? 10);
const WARMUP_MS = Number(process.env.WARMUP_MS ?? 1000);
const SAMPLE_EVERY = 50;
const CONNECT_WAVE = 100;
const SUBSCRIBE_DEADLINE_MS = 20_000;
const DRAIN_DEADLINE_MS = 3_000;
const SETTLE_MS = 500;
const CHANNEL = "bench";
/** `{"type":"event"` has a "v" here; other frames (`ping`, `error`, …) do not. */
const EVENT_MARK = { index: 10, byte: "v".charCodeAt(0) };
const OPCODE = { text: 1, close: 8, ping: 9, pong: 10 } as const;

let delivered = 0;
let closedEarly = 0;
const latencies = new Float64Array(1 << 20);
let latencyCount = 0;
const decoder = new TextDecoder();

function recordLatency(payload: Uint8Array): void {
  const sentAt = (JSON.parse(decoder.decode(payload)) as { data?: { t?: number } }).data?.t;
  if (sentAt === undefined) return;
  const value = performance.now() - sentAt;
  // Reservoir sampling keeps the array bounded however long the run.
  const slot = latencyCount < latencies.length ? latencyCount : Math.floor(Math.random() * latencyCount);
  if (slot < latencies.length) latencies[slot] = value;
  latencyCount++;
}

/** A client frame: masked, as RFC 6455 requires of clients. */
function clientFrame(opcode: number, payload: Uint8Array): Uint8Array {
  if (payload.length > 125) throw new Error("client frames here are small");
  const frame = new Uint8Array(6 + payload.length);
  frame[0] = 0x80 | opcode;
  frame[1] = 0x80 | payload.length;
  const mask = crypto.getRandomValues(new Uint8Array(4));
  frame.set(mask, 2);
  for (let i = 0; i < payload.length; i++) frame[6 + i] = (payload[i] as number) ^ (mask[i & 3] as number);
  return frame;
}

interface Subscriber {
  socket: Bun.Socket<Subscriber>;
  /** Bytes of a frame (or of the HTTP answer) that the last chunk cut short. */
  pending: Uint8Array | undefined;
  upgraded: boolean;
  subscribed: boolean;
  sampled: boolean;
  onSubscribed: () => void;
  onFailed: (error: Error) => void;
}

function send(peer: Subscriber, opcode: number, text: string | Uint8Array): void {
  peer.socket.write(clientFrame(opcode, typeof text === "string" ? new TextEncoder().encode(text) : text));
}

/** Handles one complete server frame. */
function onFrame(peer: Subscriber, opcode: number, payload: Uint8Array): void {
  if (opcode === OPCODE.ping) send(peer, OPCODE.pong, payload);
  if (opcode === OPCODE.close) peer.socket.end();
  if (opcode !== OPCODE.text) return;
  if (peer.subscribed) {
    if (payload[EVENT_MARK.index] !== EVENT_MARK.byte) return; // an app-level ping frame
    delivered++;
    if (peer.sampled) recordLatency(payload);
    return;
  }
  const frame = JSON.parse(decoder.decode(payload)) as { type: string };
  if (frame.type === "connected")
    send(peer, OPCODE.text, JSON.stringify({ type: "subscribe", channel: CHANNEL }));
  else if (frame.type === "subscribed") {
    peer.subscribed = true;
    peer.onSubscribed();
  } else peer.onFailed(new Error(`unexpected frame ${decoder.decode(payload)}`));
}

/** Splits the byte stream into frames; keeps an incomplete tail for the next chunk. */
function onData(peer: Subscriber, chunk: Uint8Array): void {
  let bytes = chunk;
  if (peer.pending) {
    bytes = new Uint8Array(peer.pending.length + chunk.length);
    bytes.set(peer.pending);
    bytes.set(chunk, peer.pending.length);
    peer.pending = undefined;
  }
  let offset = 0;
  if (!peer.upgraded) {
    const text = decoder.decode(bytes);
    const end = text.indexOf("\r\n\r\n");
    if (end < 0) {
      peer.pending = bytes.slice();
      return;
    }
    if (!text.startsWith("HTTP/1.1 101")) {
      peer.onFailed(new Error(text.split("\r\n")[0]));
      return;
    }
    peer.upgraded = true;
    offset = end + 4; // the answer is ASCII: characters are bytes
  }
  while (offset + 2 <= bytes.length) {
    const opcode = (bytes[offset] as number) & 0x0f;
    let length = (bytes[offset + 1] as number) & 0x7f;
    let header = 2;
    if (length === 126) {
      if (offset + 4 > bytes.length) break;
      length = ((bytes[offset + 2] as number) << 8) | (bytes[offset + 3] as number);
      header = 4;
    } else if (length === 127) {
      if (offset + 10 > bytes.length) break;
      length = Number(new DataView(bytes.buffer, bytes.byteOffset + offset + 2, 8).getBigUint64(0));
      header = 10;
    }
    if (offset + header + length > bytes.length) break;
    onFrame(peer, opcode, bytes.subarray(offset + header, offset + header + length));
    offset += header + length;
  }
  if (offset < bytes.length) peer.pending = bytes.slice(offset);
}

function subscribe(index: number): Promise<Subscriber> {
  return new Promise((resolve, reject) => {
    const peer = {
      pending: undefined,
      upgraded: false,
      subscribed: false,
      sampled: index % SAMPLE_EVERY === 0,
      onFailed: reject,
    } as unknown as Subscriber;
    peer.onSubscribed = () => resolve(peer);
    Bun.connect<Subscriber>({
      hostname: url.hostname,
      port: Number(url.port),
      data: peer,
      socket: {
        open(socket) {
          peer.socket = socket;
          const key = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64");
          socket.write(
            `GET /v1/ws?token=${subscribeToken} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\n` +
              `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
          );
        },
        data: (_socket, chunk) => onData(peer, chunk),
        close() {
          closedEarly++;
          reject(new Error("socket closed before subscribing"));
        },
        error: (_socket, error) => reject(error),
      },
    }).catch(reject);
  });
}

async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

async function connect(from: number, to: number): Promise<Subscriber[]> {
  const peers: Subscriber[] = [];
  for (let start = from; start < to; start += CONNECT_WAVE) {
    const wave = Array.from({ length: Math.min(CONNECT_WAVE, to - start) }, (_, i) => subscribe(start + i));
    peers.push(...(await Promise.all(wave)));
  }
  await Bun.sleep(SETTLE_MS);
  return peers;
}

const headers = { authorization: `Bearer ${ingestToken}`, "content-type": "application/json" };

function postBatch(channel: string): Promise<Response> {
  const t = performance.now();
  const records = Array.from({ length: batch }, () => ({
    type: "click",
    channel,
    data: { element: "b", t },
  }));
  return fetch(`${url.origin}/v1/events`, { method: "POST", headers, body: JSON.stringify(records) });
}

/** Ingest with nobody subscribed yet, so the memory measured next is the sockets' and not the heap's growth. */
async function warmUp(until: number): Promise<void> {
  while (performance.now() < until) await (await postBatch(`${CHANNEL}-warm-up`)).arrayBuffer();
}
const warmUpEnd = performance.now() + WARMUP_MS;
await withDeadline(Promise.all([warmUp(warmUpEnd), warmUp(warmUpEnd)]), WARMUP_MS + 10_000, "warming up");

const QUARTERS = 4;
const peers = await withDeadline(
  (async () => {
    const all: Subscriber[] = [];
    const kibPerSocketByQuarter: number[] = [];
    let rssBefore = 0;
    for (let quarter = 0; quarter < QUARTERS; quarter++) {
      const from = Math.floor((subscribers * quarter) / QUARTERS);
      const to = Math.floor((subscribers * (quarter + 1)) / QUARTERS);
      all.push(...(await connect(from, to)));
      const rss = statusBytes(gatewayPid, "VmRSS");
      if (quarter > 0) kibPerSocketByQuarter.push((rss - rssBefore) / 1024 / (to - from));
      rssBefore = rss;
    }
    const sorted = kibPerSocketByQuarter.sort((a, b) => a - b);
    return { all, kibPerSocket: sorted[Math.floor(sorted.length / 2)] as number };
  })(),
  SUBSCRIBE_DEADLINE_MS,
  `subscribing ${subscribers} sockets`,
);
const closedBeforePublishing = closedEarly;

let sentEvents = 0;
let failedRequests = 0;
const waiters: Array<() => void> = [];
// Wakes waiting publishers every millisecond rather than from the per-chunk counting.
const watcher = setInterval(() => {
  for (const wake of waiters.splice(0)) wake();
}, 1);

/** Resolves once at most one batch per subscriber is undelivered. */
async function windowOpen(): Promise<void> {
  while ((sentEvents - batch) * subscribers > delivered) {
    await new Promise<void>((resolve) => waiters.push(resolve));
  }
}

async function publisher(deadline: number): Promise<void> {
  while (performance.now() < deadline) {
    await windowOpen();
    sentEvents += batch;
    const response = await postBatch(CHANNEL);
    await response.arrayBuffer();
    if (response.status !== 202) failedRequests++;
  }
}

const cpuStart = cpuSeconds(gatewayPid);
const clientCpuStart = process.cpuUsage();
const machineStart = machineTicks();
const start = performance.now();
await Promise.all([publisher(start + durationMs), publisher(start + durationMs)]);
const elapsedSec = (performance.now() - start) / 1000;
const deliveredInWindow = delivered;
const gatewayCpu = cpuSeconds(gatewayPid) - cpuStart;
const clientCpu = process.cpuUsage(clientCpuStart);
const machineEnd = machineTicks();
const expected = sentEvents * subscribers;
const drainDeadline = performance.now() + DRAIN_DEADLINE_MS;
while (delivered < expected && performance.now() < drainDeadline) await Bun.sleep(10);
clearInterval(watcher);

const sorted = latencies.slice(0, Math.min(latencyCount, latencies.length)).sort();
const percentile = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
const closedWhilePublishing = closedEarly - closedBeforePublishing;
for (const peer of peers.all) peer.socket.end();
console.log(
  JSON.stringify({
    subscribers: peers.all.length,
    batch,
    sentEvents,
    failedRequests,
    deliveries: deliveredInWindow,
    deliveriesPerSec: deliveredInWindow / elapsedSec,
    undelivered: expected - delivered,
    closedEarly: closedWhilePublishing,
    p50Ms: percentile(0.5),
    p99Ms: percentile(0.99),
    gatewayCpuSec: gatewayCpu,
    clientCpuShare: (clientCpu.user + clientCpu.system) / 1e6 / elapsedSec,
    machineBusy: (machineEnd.busy - machineStart.busy) / (machineEnd.total - machineStart.total),
    kibPerIdleSocket: peers.kibPerSocket,
    elapsedSec,
  }),
);
process.exit(0);
