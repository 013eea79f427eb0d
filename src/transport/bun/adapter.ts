import type { Server, ServerWebSocket } from "bun";
import { replyHeaders } from "../../http/header-block.ts";
import { PairMemo } from "../../lib/pair-memo.ts";
import type {
  GatewayApp,
  HeaderBlock,
  HttpReply,
  HttpRequest,
  ListenOptions,
  RunningServer,
  StreamListener,
} from "../../ports/transport.ts";
import { BodyBuffer, clientClosed, parseContentLength, tooLarge } from "../body-buffer.ts";
import { binaryFrameText } from "../frame-text.ts";
import { framingProblem, framingRefusal } from "../framing.ts";
import { isWebSocketHandshake } from "../handshake.ts";
import { EnginePeer } from "../peer.ts";
import { SilentPeers } from "./silent-peers.ts";

const DEFAULT_HTTP_IDLE_TIMEOUT_SEC = 10;
const DEFAULT_HTTP_KEEP_ALIVE_SEC = 10;

interface SocketData<State> {
  state: State;
  peer?: EnginePeer<State>;
  /** When a frame (a message, ping or pong) last came from the peer: see SilentPeers. */
  heardAt: number;
}

/** Bun adapter: maps Bun.serve (uWebSockets inside) onto the transport seam. */
export async function listen<State>(app: GatewayApp<State>, options: ListenOptions): Promise<RunningServer> {
  const idleTimeoutSec = options.httpIdleTimeoutSec ?? DEFAULT_HTTP_IDLE_TIMEOUT_SEC;
  const keepAliveSec = options.httpKeepAliveSec ?? DEFAULT_HTTP_KEEP_ALIVE_SEC;
  const silentPeers = new SilentPeers<ServerWebSocket<SocketData<State>>>(options.ws.idleTimeoutSec * 1000);
  const server: Server<SocketData<State>> = Bun.serve<SocketData<State>>({
    hostname: options.host,
    port: options.port,
    reusePort: options.reusePort,
    // Bun arms this when a request's head is read: a body not delivered in this time (unless it
    // comes at 16 KiB/s or more) is closed, the slow-client bound uWebSockets.js has built in
    // (10 s). A new connection's first head has Bun's own 10 s, whatever this says; the idle
    // time after an answer (which also bounds the next head) is the keep-alive set below.
    idleTimeout: idleTimeoutSec,
    // Bun would answer a bare 413 of its own (no body, no headers) past its limit. The body
    // reader enforces MAX_BODY_BYTES itself, from Content-Length up front or while streaming,
    // and closes the connection after its JSON 413: Bun's limit only has to stay out of the way.
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    async fetch(req, bunServer) {
      // Bun refuses most ambiguous framing itself; a repeated identical Content-Length reaches us joined.
      const headers = req.headers;
      const contentLength = headers.get("content-length") ?? undefined;
      const problem = framingProblem(
        contentLength,
        headers.get("transfer-encoding") ?? undefined,
        headers.get("host") ?? undefined,
      );
      if (problem !== undefined) return toResponse(framingRefusal(problem));
      const request = new BunHttpRequest(req, headers, contentLength, bunServer, options.maxBodyBytes);
      // The router answers what is no handshake: Bun would answer a failed upgrade with a bare 400.
      if (
        request.path === app.wsPath &&
        isWebSocketHandshake(
          req.method,
          headers.get("upgrade") ?? undefined,
          headers.get("sec-websocket-key") ?? undefined,
        )
      ) {
        const decision = await app.ws.upgrade(request);
        if (decision.accept) {
          if (bunServer.upgrade(req, { data: { state: decision.state, heardAt: 0 } })) return undefined;
          return toResponse({ status: 400, body: "" });
        }
        return toResponse(decision.reply);
      }
      // Bun's idle timer keeps running while the handler works on a request without a body
      // (one with a body is let be once it is read), so a wait of about 10 s (a delta read
      // back from the fan-out topic, up to REPLAY_TIMEOUT_MS) lost its answer: the connection
      // was dropped. Such a request is whole once its head is read, so no slow-client bound
      // is lost; the keep-alive bound is set for the idle connection after the answer.
      const whole =
        !headers.has("transfer-encoding") && (contentLength === undefined || contentLength === "0");
      if (whole) bunServer.timeout(req, 0);
      const reply = await app.http(request);
      if (reply.stream && req.method !== "HEAD" && !req.signal.aborted) {
        // A stream may stay quiet between heartbeats longer than the idle timeout that bounds
        // requests; once the server ends it, the connection is an idle keep-alive one again
        // (Bun keeps a request's timeout for its connection: 0 would hold it open for good).
        bunServer.timeout(req, 0);
        return streamResponse(reply, reply.stream, req.signal, () => bunServer.timeout(req, keepAliveSec));
      }
      // Bun keeps the timeout set here for the idle connection after the answer: the keep-alive.
      // Not while a body may still be arriving (answered before it was read): that keeps the
      // slow-client bound, and the connection idles out at it.
      if (whole || request.bodyReceived) bunServer.timeout(req, keepAliveSec);
      // HEAD, or the client left already: the stream never opens.
      reply.stream?.closed();
      // A stream's GET is chunked, its length unknown: its HEAD says so too (an empty stream
      // body, which Bun cancels unread), not the length of the first chunk.
      if (req.method !== "HEAD") return toResponse(reply);
      const head = reply.stream
        ? new Response(new ReadableStream(), { status: reply.status, headers: replyHeaders(reply) })
        : toResponse(reply);
      // Bun writes Date on a GET's answer but not on a HEAD's, which is to carry GET's headers
      // (RFC 9110 §9.3.2) and a Date (§6.6.1). Set on this response's own copy of the headers.
      head.headers.set("date", new Date().toUTCString());
      return head;
    },
    websocket: {
      maxPayloadLength: options.ws.maxPayloadBytes,
      backpressureLimit: options.ws.maxBackpressureBytes,
      closeOnBackpressureLimit: false,
      idleTimeout: options.ws.idleTimeoutSec,
      sendPings: true,
      open(socket) {
        socket.data.peer = createPeer(socket);
        silentPeers.opened(socket);
        app.ws.open(socket.data.peer);
      },
      ping(socket) {
        silentPeers.heard(socket);
      },
      pong(socket) {
        silentPeers.heard(socket);
      },
      message(socket, message) {
        silentPeers.heard(socket);
        const peer = socket.data.peer;
        if (peer) app.ws.message(peer, typeof message === "string" ? message : binaryFrameText(message));
      },
      drain(socket) {
        const peer = socket.data.peer;
        if (peer) app.ws.drain(peer);
      },
      close(socket, code) {
        silentPeers.closed(socket);
        const peer = socket.data.peer;
        if (!peer) return;
        peer.markClosed();
        app.ws.close(peer, code);
      },
    },
  });
  let listening = true;

  return {
    port: server.port ?? options.port,
    runtime: "bun",
    publish: (topic, text) => {
      server.publish(topic, text);
    },
    stopListening: () => {
      if (!listening) return;
      listening = false;
      silentPeers.stop();
      // false: stop accepting, let open requests and sockets finish.
      server.stop(false);
    },
  };
}

/**
 * Path and query string of `req.url` without `new URL()`, which throws on
 * the URL Bun builds for a request without a Host header (an HTTP/1.0 load
 * balancer check), and costs more on the hot path.
 */
export function splitUrl(raw: string): { path: string; search: string } {
  const schemeEnd = raw.indexOf("://");
  const pathStart = raw.indexOf("/", schemeEnd >= 0 ? schemeEnd + 3 : 0);
  const pathAndQuery = pathStart >= 0 ? raw.slice(pathStart) : "/";
  const queryStart = pathAndQuery.indexOf("?");
  return queryStart >= 0
    ? { path: pathAndQuery.slice(0, queryStart), search: pathAndQuery.slice(queryStart + 1) }
    : { path: pathAndQuery, search: "" };
}

/**
 * The query of every request without one (most: ~0.1 µs and an object per
 * request on Bun to make an empty URLSearchParams), shared, so it refuses
 * changes: a handler only reads its request's query.
 */
class NoQuery extends URLSearchParams {
  override append(): never {
    throw new TypeError("a request's query is read-only");
  }
  override set(): never {
    throw new TypeError("a request's query is read-only");
  }
  override delete(): never {
    throw new TypeError("a request's query is read-only");
  }
  override sort(): void {}
}
const NO_QUERY: URLSearchParams = new NoQuery();

/**
 * The request as the core sees it. A class rather than an object of getters
 * and closures: one is made per request, so its methods are shared (as the
 * uWS adapter's); the Headers object and the Content-Length the framing
 * check read are kept, not asked of Bun again.
 */
class BunHttpRequest<State> implements HttpRequest {
  readonly method: string;
  readonly path: string;
  private readonly search: string;
  private parsedQuery: URLSearchParams | undefined;
  private address: string | undefined;
  private bodyBytes: Promise<Uint8Array> | undefined;
  /** The whole body has arrived (read to its end, within the limit). */
  bodyReceived = false;

  constructor(
    private readonly req: Request,
    private readonly headers: Headers,
    private readonly contentLength: string | undefined,
    private readonly server: Server<SocketData<State>>,
    private readonly limit: number,
  ) {
    const { path, search } = splitUrl(req.url);
    this.method = req.method;
    this.path = path;
    this.search = search;
  }

  /** Parsed only when a handler asks. */
  get query(): URLSearchParams {
    this.parsedQuery ??= this.search === "" ? NO_QUERY : new URLSearchParams(this.search);
    return this.parsedQuery;
  }

  header(name: string): string | undefined {
    return this.headers.get(name) ?? undefined;
  }

  headerNames(): Iterable<string> {
    return this.headers.keys();
  }

  /** On first use, like on Node: most requests never ask (rate limits off, or behind a proxy). */
  get remoteAddress(): string {
    this.address ??= this.server.requestIP(this.req)?.address ?? "";
    return this.address;
  }

  body(): Promise<Uint8Array> {
    this.bodyBytes ??= collectBody(this, this.req, parseContentLength(this.contentLength), this.limit);
    return this.bodyBytes;
  }
}

/**
 * With a Content-Length within the limit (what clients send for a JSON
 * body), Bun reads exactly that many bytes in one native call (`arrayBuffer()`): reading
 * through the body's ReadableStream cost about a quarter of a one-event
 * request's CPU (a promise and a controller callback per chunk). Without
 * one (chunked), the stream is read chunk by chunk up to the limit.
 */
function collectBody(
  into: { bodyReceived: boolean },
  req: Request,
  contentLength: number | undefined,
  limit: number,
): Promise<Uint8Array> {
  if (contentLength === undefined) return streamBody(into, req, limit);
  if (contentLength > limit) return Promise.reject(tooLarge(limit));
  // Bun fails the read (AbortError) only when the connection ended mid-body.
  return req.arrayBuffer().then(
    (bytes) => {
      into.bodyReceived = true;
      return new Uint8Array(bytes);
    },
    () => {
      throw clientClosed();
    },
  );
}

async function streamBody(into: { bodyReceived: boolean }, req: Request, limit: number): Promise<Uint8Array> {
  const buffer = new BodyBuffer(limit, undefined);
  if (!req.body) {
    into.bodyReceived = true;
    return buffer.bytes();
  }
  const reader = req.body.getReader();
  for (;;) {
    // Bun fails the read (AbortError) only when the connection ended mid-body.
    const { done, value } = await reader.read().catch(() => {
      throw clientClosed();
    });
    if (done) {
      into.bodyReceived = true;
      return buffer.bytes();
    }
    try {
      buffer.append(value);
    } catch {
      await reader.cancel();
      throw tooLarge(limit);
    }
  }
}

/**
 * A Response copies a Headers object natively (~0.3 us) but builds one from
 * a plain object property by property (~0.6 us, plus ~0.4 us to merge the
 * reply's own headers with its block). So a reply with a block gets the
 * Headers made once for it and its own headers when those are a frozen
 * shared object (JSON's content type: the usual reply); own headers made
 * for this reply alone (a RateLimit remaining count) are set one by one on
 * a native copy of the block's: ~0.75 us against ~1.7 us for the merged
 * plain object, in a Bun loop with two own fields.
 */
function toResponse(reply: HttpReply): Response {
  const own = reply.headers;
  const block = reply.sharedHeaders;
  if (reply.closeConnection) {
    const headers = { ...replyHeaders(reply), connection: "close" };
    return new Response(reply.body, { status: reply.status, headers });
  }
  if (block === undefined) return new Response(reply.body, { status: reply.status, headers: own });
  if (own === undefined || Object.isFrozen(own)) {
    const headers = blockHeaders(own ?? NO_OWN_HEADERS, block);
    return new Response(reply.body, { status: reply.status, headers });
  }
  const response = new Response(reply.body, {
    status: reply.status,
    headers: blockHeaders(NO_OWN_HEADERS, block),
  });
  const headers = response.headers;
  // The block wins on a name both have.
  for (const name in own) if (!(name in block.fields)) headers.set(name, own[name] as string);
  return response;
}

/** The key for a reply with a shared block and no headers of its own. */
const NO_OWN_HEADERS = Object.freeze({});
/** Bun Headers made once per frozen (shared) own-headers object and header block; weak, so they go with them. */
const madeHeaders = new PairMemo(
  (own: Readonly<Record<string, string>>, block: HeaderBlock) =>
    new Headers(Object.assign({}, own, block.fields)),
);

/** The Headers of frozen own headers (or none: NO_OWN_HEADERS) and a block, made once per pair. */
function blockHeaders(own: Readonly<Record<string, string>>, block: HeaderBlock): Headers {
  return madeHeaders.get(own, block);
}

/**
 * A streaming response on Bun: a ReadableStream whose queue counts bytes.
 * Bun takes chunks as the socket accepts them, so the queue's size is what
 * the client has not read (beyond the socket's own buffers).
 */
function streamResponse(
  reply: HttpReply,
  listener: StreamListener,
  signal: AbortSignal,
  idleAgain: () => void,
): Response {
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    listener.closed();
  };
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>(
    {
      start(controller) {
        controller.enqueue(typeof reply.body === "string" ? encoder.encode(reply.body) : reply.body);
        listener.open({
          write(text) {
            if (done) return false;
            controller.enqueue(encoder.encode(text));
            return true;
          },
          bufferedAmount: () => (done ? 0 : Math.max(0, -(controller.desiredSize ?? 0))),
          end() {
            if (done) return;
            idleAgain();
            controller.close();
            finish();
          },
          abort() {
            if (done) return;
            // An errored body makes Bun drop the connection instead of ending the response.
            controller.error(new Error("stream aborted"));
            finish();
          },
        });
      },
      cancel: finish,
    },
    new ByteLengthQueuingStrategy({ highWaterMark: 0 }),
  );
  signal.addEventListener("abort", finish, { once: true });
  return new Response(body, { status: reply.status, headers: replyHeaders(reply) });
}

function createPeer<State>(socket: ServerWebSocket<SocketData<State>>): EnginePeer<State> {
  return new EnginePeer(socket.data.state, {
    send: (text) => {
      const status = socket.send(text);
      return status > 0 ? "sent" : status === -1 ? "queued" : "dropped";
    },
    subscribe: (topic) => socket.subscribe(topic),
    unsubscribe: (topic) => socket.unsubscribe(topic),
    bufferedAmount: () => socket.getBufferedAmount(),
    close: (code, reason) => socket.close(code, reason),
  });
}
