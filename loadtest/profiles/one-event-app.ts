// The one-event request path in process, without sockets (see one-event-core.ts): the gateway made as
// main.ts makes it (embedded sink in a temporary LOCAL_LOG_DIR, rate limits off unless CORE_REDIS_URL),
// and rounds of post.lua's request through its app, CONNECTIONS at a time. A module of its own so that
// core-ab.ts can load two checkouts' copies into one process.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createGateway } from "../../src/app.ts";
import { loadConfig } from "../../src/config/config.ts";
import { signDevToken } from "../../src/infra/auth/dev-token.ts";
import { createLogger } from "../../src/log/logger.ts";
import type { HttpRequest } from "../../src/ports/transport.ts";

export interface CoreRound {
  /** Requests answered 202 in the round. */
  requests: number;
  /** The process's CPU over the round (every thread), µs. */
  cpuUs: number;
}

export interface OneEventCore {
  readonly runtime: string;
  /** Requests for `seconds`, `connections` in flight; throws when one is refused. */
  round(seconds: number): Promise<CoreRound>;
  close(): void;
}

/** `ack`: "none" sends `?ack=none`; `redisUrl`: Redis-backed limits on (budgets of 10^8/s: nothing refused). */
export async function oneEventCore(
  options: { connections?: number; ack?: string; redisUrl?: string } = {},
): Promise<OneEventCore> {
  const connections = options.connections ?? 256;
  const runtime = typeof Bun !== "undefined" ? "bun" : "node-uws";
  const root = join(import.meta.dirname ?? __dirname, "../..");
  const secret = `core-${crypto.randomUUID()}-${crypto.randomUUID()}`;
  const logDir = mkdtempSync(join(tmpdir(), "core-log-"));
  const config = loadConfig({
    ...process.env,
    JWT_SECRET: secret,
    DEV_MODE: "false",
    LOG_LEVEL: "warn",
    RATE_LIMIT_ENABLED: options.redisUrl ? "true" : "false",
    RATE_LIMIT_EVENTS_PER_SEC: "100000000",
    RATE_LIMIT_REQUESTS_PER_SEC: "100000000",
    KAFKA_BROKERS: "",
    REDIS_URL: options.redisUrl ?? "",
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
  // post.lua's event and headers; with EVENT_CHANNEL, on that channel (the fan-out path: the 202 waits for its copy).
  const channel = process.env.EVENT_CHANNEL;
  const event = Buffer.from(
    `{"type":"page_view",${channel ? `"channel":${JSON.stringify(channel)},` : ""}"data":{"url":"https://example.com/bench","title":"bench"}}`,
  );
  const search = options.ack === "none" ? "ack=none" : "";
  const headers = new Map([
    ["host", "127.0.0.1"],
    ["content-type", "application/json"],
    ["content-length", String(event.byteLength)],
    ["authorization", `Bearer ${token}`],
  ]);

  /**
   * A request as an adapter hands it to the core: the body read into a buffer of its own. A class, as
   * both adapters' requests are: V8 keeps an object literal with a getter (`get query()`) in dictionary
   * mode, so every read of the request was a generic lookup on Node, ~10% of the core's CPU here
   * (core-ab.ts, literal against class, Node 0.88 and 0.91; Bun 1.04, no change) that the gateway
   * never pays.
   */
  class CoreRequest implements HttpRequest {
    readonly method = "POST";
    readonly path = "/v1/events";
    readonly remoteAddress = "127.0.0.1";
    private readonly bytes = Buffer.allocUnsafe(event.byteLength);
    constructor() {
      event.copy(this.bytes);
    }
    get query(): URLSearchParams {
      return new URLSearchParams(search);
    }
    header(name: string): string | undefined {
      return headers.get(name);
    }
    headerNames(): Iterable<string> {
      return headers.keys();
    }
    body(): Promise<Uint8Array> {
      return Promise.resolve(this.bytes);
    }
  }
  const request = (): HttpRequest => new CoreRequest();

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

  return {
    runtime,
    async round(seconds) {
      answered = 0;
      refused = 0;
      const before = process.cpuUsage();
      const until = performance.now() + seconds * 1000;
      await Promise.all(Array.from({ length: connections }, () => connection(until)));
      const used = process.cpuUsage(before);
      if (refused > 0) throw new Error(`${refused} requests refused`);
      return { requests: answered, cpuUs: used.user + used.system };
    },
    close() {
      rmSync(logDir, { recursive: true, force: true });
    },
  };
}
