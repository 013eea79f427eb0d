// The one-event request path in process, without sockets: the gateway made as main.ts makes it
// (embedded sink in a temporary LOCAL_LOG_DIR, rate limits off), its app called with post.lua's
// request, CONNECTIONS requests at a time, for an A/B of the core (router, auth, ingest, queue,
// local log) that the machine's scheduling noise moves less than a wrk run. Prints the process's
// CPU per request (every thread: the log's writes on the runtime's I/O threads too).
//
//   bun loadtest/profiles/one-event-core.ts [seconds] [rounds]
//   bun build loadtest/profiles/one-event-core.ts --target=node --packages=external --outdir=dist/core \
//     && node dist/core/one-event-core.js [seconds] [rounds]
//   ACK=none   ?ack=none instead of the default acknowledgement
//   CONNECTIONS=256   requests in flight (default 256, as `bun run bench`'s one-event cases)
//   CORE_REDIS_URL=redis://host:port   rate limits on, leased from that Redis (budgets of 10^8/s: nothing refused)
// For an A/B, copy this file into the other checkout (`git archive`) and run both alternately.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createGateway } from "../../src/app.ts";
import { loadConfig } from "../../src/config/config.ts";
import { signDevToken } from "../../src/infra/auth/dev-token.ts";
import { createLogger } from "../../src/log/logger.ts";
import type { HttpRequest } from "../../src/ports/transport.ts";

const seconds = Number(process.argv[2] ?? 3);
const rounds = Number(process.argv[3] ?? 3);
const connections = Number(process.env.CONNECTIONS ?? 256);
const runtime = typeof Bun !== "undefined" ? "bun" : "node-uws";
const root = join(import.meta.dirname ?? __dirname, "../..");

const secret = `core-${crypto.randomUUID()}-${crypto.randomUUID()}`;
const logDir = mkdtempSync(join(tmpdir(), "core-log-"));
const config = loadConfig({
  ...process.env,
  JWT_SECRET: secret,
  DEV_MODE: "false",
  LOG_LEVEL: "warn",
  RATE_LIMIT_ENABLED: process.env.CORE_REDIS_URL ? "true" : "false",
  RATE_LIMIT_EVENTS_PER_SEC: "100000000",
  RATE_LIMIT_REQUESTS_PER_SEC: "100000000",
  KAFKA_BROKERS: "",
  REDIS_URL: process.env.CORE_REDIS_URL ?? "",
  LOCAL_LOG_DIR: logDir,
});
const gateway = await createGateway({
  config,
  log: createLogger("warn", { runtime }),
  runtime,
  engine: runtime === "bun" ? "bun" : "uws-native",
  version: "core",
  defaultSchemas: join(root, "schemas"),
});
const token = await signDevToken({ secret, tenant: "bench", scopes: ["ingest"], ttlSec: 3600 });
// post.lua's event and headers.
const event = Buffer.from('{"type":"page_view","data":{"url":"https://example.com/bench","title":"bench"}}');
const search = process.env.ACK === "none" ? "ack=none" : "";
const headers = new Map([
  ["host", "127.0.0.1"],
  ["content-type", "application/json"],
  ["content-length", String(event.byteLength)],
  ["authorization", `Bearer ${token}`],
]);

/** A request as an adapter hands it to the core: the body read into a buffer of its own. */
function request(): HttpRequest {
  const body = Buffer.allocUnsafe(event.byteLength);
  event.copy(body);
  return {
    method: "POST",
    path: "/v1/events",
    get query() {
      return new URLSearchParams(search);
    },
    header: (name) => headers.get(name),
    headerNames: () => headers.keys(),
    remoteAddress: "127.0.0.1",
    body: () => Promise.resolve(body),
  };
}

let answered = 0;
let refused = 0;
async function connection(until: number): Promise<void> {
  while (performance.now() < until) {
    const reply = await gateway.app.http(request());
    if (reply.status === 202) answered++;
    else {
      refused++;
      // The first refusal says why (ACK=none outruns the local log at 256 in flight: 503, the queue full).
      if (refused === 1) console.error("refused:", reply.status, reply.body);
    }
  }
}

async function round(duration: number): Promise<{ requests: number; cpuUs: number }> {
  answered = 0;
  refused = 0;
  const before = process.cpuUsage();
  const until = performance.now() + duration * 1000;
  await Promise.all(Array.from({ length: connections }, () => connection(until)));
  const used = process.cpuUsage(before);
  if (refused > 0) throw new Error(`${refused} requests refused`);
  return { requests: answered, cpuUs: used.user + used.system };
}

await round(1); // warm-up (and, with limits on, Redis ready and the first leases)
for (let index = 0; index < rounds; index++) {
  const { requests, cpuUs } = await round(seconds);
  console.log(
    `core ${runtime} ack=${search === "" ? "default" : "none"}: ${Math.round(requests / seconds)} req/s, ${(cpuUs / requests).toFixed(2)} CPU-us/request`,
  );
}
rmSync(logDir, { recursive: true, force: true });
process.exit(0);
