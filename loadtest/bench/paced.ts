// An open-model (constant arrival rate) HTTP load generator: POST requests are
// due at fixed intervals of 1/rate whatever the server does, over a pool of
// keep-alive TCP connections with one request in flight on each. A request is
// timed from its *scheduled* send time to the end of its response, so a slow
// server (or a late timer here) shows in the latencies instead of quietly
// lowering the rate (no coordinated omission). A request whose slot comes while
// every connection is busy waits for the next free one; that wait counts in its
// latency and the waits are counted. The generator's own CPU is reported so a
// reader can see it was not the limit. Used by bench.ts for the
// "paced at half the saturating rate" table.
//   BENCH_TOKEN=... bun loadtest/bench/paced.ts --port 8080 --rate 5000 --duration 5 [--events 100]
//     [--connections 64] [--host 127.0.0.1] [--path /v1/events] [--keys N]
// Prints a summary on stderr and one line "paced-result {json}" on stdout.
import { parseArgs } from "node:util";
import type { Socket } from "bun";

export interface PacedOptions {
  host: string;
  port: number;
  path: string;
  /** Header lines besides Host and Content-Length. */
  headers: Record<string, string>;
  /** The request body, or bodies sent in turn (request i gets bodies[i % length]). */
  body: string | string[];
  ratePerSec: number;
  durationSec: number;
  connections: number;
  /** How long after the last slot the run waits for responses before giving up on them. */
  drainTimeoutMs?: number;
}

export interface PacedResult {
  targetPerSec: number;
  /** Completed responses ÷ the time from the first slot to the end of the schedule or the last response, whichever is later. */
  achievedPerSec: number;
  scheduled: number;
  completed: number;
  /** Requests without a response when the drain timeout ran out. */
  unfinished: number;
  non2xx: number;
  /** Requests whose slot came while every connection was busy. */
  waits: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  /** 99th percentile of (send time - scheduled time) over requests that found a free connection: the generator's own lateness. */
  sendLagP99Ms: number;
  elapsedSec: number;
  /** The generator's user + system CPU over the run (process.cpuUsage), and as a share of one core. */
  cpuSec: number;
  cpuShare: number;
}

/**
 * The bodies loadtest/bench/post.lua sends: one page_view event, or a JSON
 * array of `events` of them; with `key`, every event carries it as its record
 * key (without, Kafka's key is the tenant: one partition).
 */
export function benchBody(events: number, key?: string): string {
  const keyed = key === undefined ? "" : `"key":${JSON.stringify(key)},`;
  const event = `{${keyed}"type":"page_view","data":{"url":"https://example.com/bench","title":"bench"}}`;
  return events <= 1 ? event : `[${Array(events).fill(event).join(",")}]`;
}

const HEAD_END = Buffer.from("\r\n\r\n");
/** Larger response heads than this are not what the gateway sends. */
const MAX_HEAD_BYTES = 16 * 1024;
const CONTENT_LENGTH = /\r\ncontent-length:[ \t]*(\d+)[ \t]*(?=\r\n|$)/i;
const TRANSFER_ENCODING = /\r\ntransfer-encoding:/i;

interface Connection {
  socket: Socket<Connection> | undefined;
  /** Scheduled time of the request in flight, or -1 when idle. */
  scheduledAt: number;
  /** Bytes of the request the kernel did not take yet (written on `drain`). */
  unwritten: Uint8Array | undefined;
  /** Bytes of a response head that arrived split over chunks. */
  partialHead: Buffer | undefined;
  status: number;
  /** Body bytes still to come, or -1 while the head is still being read. */
  bodyLeft: number;
}

function percentile(sorted: Float64Array, share: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil(share * sorted.length) - 1)] as number;
}

/** Runs the schedule; resolves with the summary and every latency (ms, in completion order). */
export async function runPaced(
  options: PacedOptions,
): Promise<{ result: PacedResult; latenciesMs: Float64Array }> {
  const { ratePerSec, durationSec, connections: poolSize } = options;
  if (!(ratePerSec > 0) || !(durationSec > 0) || !(poolSize >= 1)) {
    throw new Error(
      `rate, duration and connections must be positive: ${ratePerSec}, ${durationSec}, ${poolSize}`,
    );
  }
  const scheduled = Math.max(1, Math.round(ratePerSec * durationSec));
  const intervalMs = 1000 / ratePerSec;
  const drainTimeoutMs = options.drainTimeoutMs ?? 10_000;
  const requests = (typeof options.body === "string" ? [options.body] : options.body).map((text) => {
    const body = Buffer.from(text);
    const head = [
      `POST ${options.path} HTTP/1.1`,
      `Host: ${options.host}:${options.port}`,
      ...Object.entries(options.headers).map(([name, value]) => `${name}: ${value}`),
      `Content-Length: ${body.length}`,
      "",
      "",
    ].join("\r\n");
    return new Uint8Array(Buffer.concat([Buffer.from(head), body]));
  });
  let sent = 0;

  // Every buffer is bounded by the schedule: one entry per scheduled request.
  const latenciesMs = new Float64Array(scheduled);
  const sendLagsMs = new Float64Array(scheduled);
  /** Scheduled times of requests waiting for a connection, in order (a queue over a fixed array). */
  const waiting = new Float64Array(scheduled);
  let waitHead = 0;
  let waitTail = 0;
  let completed = 0;
  let lagged = 0;
  let non2xx = 0;
  let waits = 0;
  let next = 0;
  let startedAt = 0;
  let lastResponseAt = 0;
  let finished = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const idle: Connection[] = [];
  const pool: Connection[] = [];

  let settle: (error?: Error) => void = () => {};
  const done = new Promise<void>((resolve, reject) => {
    settle = (error) => (error ? reject(error) : resolve());
  });
  function finish(error?: Error): void {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    for (const connection of pool) connection.socket?.end();
    settle(error);
  }
  const fail = (message: string) => finish(new Error(`paced: ${message}`));

  function send(connection: Connection, scheduledAt: number): void {
    const socket = connection.socket as Socket<Connection>;
    connection.scheduledAt = scheduledAt;
    connection.status = 0;
    connection.bodyLeft = -1;
    const request = requests[sent++ % requests.length] as Uint8Array;
    const written = socket.write(request);
    if (written < request.length) connection.unwritten = request.subarray(Math.max(0, written));
  }

  function dispatch(scheduledAt: number): void {
    const connection = idle.pop();
    if (connection) {
      sendLagsMs[lagged++] = performance.now() - scheduledAt;
      send(connection, scheduledAt);
    } else {
      waits++;
      waiting[waitTail++] = scheduledAt;
    }
  }

  function responded(connection: Connection): void {
    const now = performance.now();
    latenciesMs[completed++] = now - connection.scheduledAt;
    lastResponseAt = now;
    if (connection.status < 200 || connection.status > 299) non2xx++;
    connection.scheduledAt = -1;
    if (waitHead < waitTail) send(connection, waiting[waitHead++] as number);
    else idle.push(connection);
    if (completed === scheduled) finish();
  }

  /** Reads a chunk of the response in flight; returns what is wrong with it, if anything. */
  function read(connection: Connection, chunk: Buffer): string | undefined {
    if (connection.scheduledAt < 0) return "bytes from the server with no request in flight";
    let bytes = chunk;
    if (connection.bodyLeft < 0) {
      bytes = connection.partialHead ? Buffer.concat([connection.partialHead, chunk]) : chunk;
      connection.partialHead = undefined;
      const end = bytes.indexOf(HEAD_END);
      if (end < 0) {
        if (bytes.length > MAX_HEAD_BYTES) return `response head over ${MAX_HEAD_BYTES} bytes`;
        connection.partialHead = bytes;
        return undefined;
      }
      const text = bytes.toString("latin1", 0, end);
      if (!text.startsWith("HTTP/1.1 ")) return `not an HTTP/1.1 response: ${text.slice(0, 40)}`;
      if (TRANSFER_ENCODING.test(text))
        return "a response with Transfer-Encoding (only Content-Length is read)";
      const length = CONTENT_LENGTH.exec(text)?.[1];
      if (length === undefined) return `a response without Content-Length: ${text.slice(0, 200)}`;
      connection.status = Number(text.slice(9, 12));
      connection.bodyLeft = Number(length);
      bytes = bytes.subarray(end + HEAD_END.length);
    }
    // One request in flight per connection: bytes past its response are a protocol error.
    if (bytes.length > connection.bodyLeft) return "more bytes than the response's Content-Length";
    connection.bodyLeft -= bytes.length;
    if (connection.bodyLeft === 0) responded(connection);
    return undefined;
  }

  function onData(connection: Connection, chunk: Buffer): void {
    if (finished) return;
    const problem = read(connection, chunk);
    if (problem) fail(problem);
  }

  const connecting = Promise.all(
    Array.from({ length: poolSize }, async () => {
      const connection: Connection = {
        socket: undefined,
        scheduledAt: -1,
        unwritten: undefined,
        partialHead: undefined,
        status: 0,
        bodyLeft: -1,
      };
      connection.socket = await Bun.connect<Connection>({
        hostname: options.host,
        port: options.port,
        data: connection,
        socket: {
          data: (socket, chunk) => onData(socket.data, chunk),
          drain(socket) {
            const rest = socket.data.unwritten;
            if (!rest) return;
            const written = socket.write(rest);
            socket.data.unwritten = written < rest.length ? rest.subarray(Math.max(0, written)) : undefined;
          },
          close: () => fail("the server closed a connection"),
          error: (_socket, error) => fail(`socket error: ${error.message}`),
        },
      });
      pool.push(connection);
      idle.push(connection);
    }),
  );

  await connecting.catch((error: Error) => {
    finish();
    throw error;
  });
  const cpuBefore = process.cpuUsage();
  startedAt = performance.now();
  const scheduleEndsAt = startedAt + durationSec * 1000;
  // Sends every request whose slot has come, then sleeps until the next slot; a
  // late timer makes a burst of due requests, each still timed from its own slot.
  function tick(): void {
    if (finished) return;
    const now = performance.now();
    while (next < scheduled && startedAt + next * intervalMs <= now)
      dispatch(startedAt + next++ * intervalMs);
    if (next < scheduled) {
      timer = setTimeout(tick, Math.max(0, startedAt + next * intervalMs - performance.now()));
    } else {
      // Responses still missing then are reported as unfinished.
      timer = setTimeout(() => finish(), drainTimeoutMs);
    }
  }
  tick();

  await done;
  const cpu = process.cpuUsage(cpuBefore);
  const elapsedMs = Math.max(lastResponseAt, scheduleEndsAt) - startedAt;
  const sorted = latenciesMs.slice(0, completed).sort();
  const lags = sendLagsMs.slice(0, lagged).sort();
  const cpuSec = (cpu.user + cpu.system) / 1e6;
  return {
    result: {
      targetPerSec: ratePerSec,
      achievedPerSec: completed / (elapsedMs / 1000),
      scheduled,
      completed,
      unfinished: scheduled - completed,
      non2xx,
      waits,
      p50Ms: percentile(sorted, 0.5),
      p90Ms: percentile(sorted, 0.9),
      p99Ms: percentile(sorted, 0.99),
      p999Ms: percentile(sorted, 0.999),
      maxMs: sorted.length > 0 ? (sorted[sorted.length - 1] as number) : 0,
      sendLagP99Ms: percentile(lags, 0.99),
      elapsedSec: elapsedMs / 1000,
      cpuSec,
      cpuShare: cpuSec / (elapsedMs / 1000),
    },
    latenciesMs: latenciesMs.slice(0, completed),
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string" },
      path: { type: "string", default: "/v1/events" },
      rate: { type: "string" },
      duration: { type: "string" },
      connections: { type: "string", default: "64" },
      events: { type: "string", default: "1" },
      keys: { type: "string", default: "0" },
    },
  });
  if (!values.port || !values.rate || !values.duration) {
    process.stderr.write(
      "usage: paced.ts --port N --rate REQ_PER_SEC --duration SEC [--events N] [--connections C]\n",
    );
    process.exit(2);
  }
  const { result } = await runPaced({
    host: values.host,
    port: Number(values.port),
    path: values.path,
    headers: {
      "Content-Type": "application/json",
      Authorization: `Bearer ${process.env.BENCH_TOKEN ?? ""}`,
    },
    // --keys N: request i's events carry the record key k<i mod N>, spreading them over partitions.
    body:
      Number(values.keys) > 0
        ? Array.from({ length: Number(values.keys) }, (_, i) => benchBody(Number(values.events), `k${i}`))
        : benchBody(Number(values.events)),
    ratePerSec: Number(values.rate),
    durationSec: Number(values.duration),
    connections: Number(values.connections),
  });
  const ms = (value: number) => value.toFixed(2);
  process.stderr.write(
    `paced: target ${result.targetPerSec} req/s, achieved ${result.achievedPerSec.toFixed(0)}, ${result.completed} done` +
      ` (${result.non2xx} non-2xx, ${result.unfinished} unfinished, ${result.waits} waited for a connection);` +
      ` p50 ${ms(result.p50Ms)} p90 ${ms(result.p90Ms)} p99 ${ms(result.p99Ms)} p99.9 ${ms(result.p999Ms)} max ${ms(result.maxMs)} ms;` +
      ` send lag p99 ${ms(result.sendLagP99Ms)} ms; generator CPU ${(result.cpuShare * 100).toFixed(0)}%\n`,
  );
  process.stdout.write(`paced-result ${JSON.stringify(result)}\n`);
  process.exit(0);
}
