import type {
  us_listen_socket as UwsListenSocket,
  HttpRequest as UwsRequest,
  HttpResponse as UwsResponse,
  WebSocket as UwsSocket,
  us_socket_context_t as UwsSocketContext,
} from "uWebSockets.js";
import { statusLine } from "../../http/status-text.ts";
import type {
  GatewayApp,
  HttpReply,
  HttpRequest,
  HttpStream,
  ListenOptions,
  RunningServer,
  StreamListener,
} from "../../ports/transport.ts";
import { clientClosed, parseContentLength } from "../body-buffer.ts";
import { binaryFrameText } from "../frame-text.ts";
import { framingProblem, framingRefusal } from "../framing.ts";
import { isWebSocketHandshake } from "../handshake.ts";
import { EnginePeer } from "../peer.ts";
import { BodyCollector } from "./body-collector.ts";
import { uwsEngine } from "./engine.ts";
import { resolvedPath } from "./resolved-path.ts";

/**
 * Bun.serve answers a request head (request line and header fields) of more
 * than 16 KiB with a bare 431 and closes; uWebSockets.js 20.30 takes heads up
 * to about 100 KB (and closes without an answer past that). The same bound
 * and answer here, so both runtimes refuse the same requests alike.
 */
const MAX_HEAD_BYTES = 16 * 1024;

// uWebSockets.js reads UWS_HTTP_MAX_HEADERS_SIZE once, as its addon loads: the
// most it buffers of a head cut across reads (TCP segments, TLS records). 4 KiB
// unless set, so the Node 24 target's 20.57 answered 431 to a 6 KB head sent in
// two writes; 20.30 does not read it. Loaded after setting it (a static import
// would load the addon first); an operator's own value stands.
process.env.UWS_HTTP_MAX_HEADERS_SIZE ??= String(MAX_HEAD_BYTES);
const { default: uws } = await import("uWebSockets.js");

/** Native addon or the package's pure-JS fallback: see engine.ts. */
export const engine = uwsEngine(uws);

interface SocketData<State> {
  state: State;
  peer?: EnginePeer<State>;
}

/** Exported by the addon, typed only as a member of an enum that does not exist at run time. */
const { LIBUS_LISTEN_EXCLUSIVE_PORT } = uws as unknown as { LIBUS_LISTEN_EXCLUSIVE_PORT: number };

type ListenWithOptions = (
  host: string,
  port: number,
  options: number,
  cb: (listenSocket: UwsListenSocket | false) => void,
) => void;

const METHODS_WITHOUT_BODY = new Set(["GET", "HEAD", "OPTIONS", "DELETE"]);

/**
 * A body announced at most this long, still arriving when its request is answered, is let in on an
 * open connection (and let go, not kept): closing would cost a keep-alive client a reconnect.
 */
const SMALL_BODY_BYTES = 64 * 1024;
// A leading U+FEFF stays (TextDecoder drops it by default): Bun hands text frames over as sent.
const textDecoder = new TextDecoder("utf-8", { ignoreBOM: true });

/** Node adapter: maps uWebSockets.js onto the transport seam. */
export async function listen<State>(app: GatewayApp<State>, options: ListenOptions): Promise<RunningServer> {
  const server = uws.App();

  server.ws<SocketData<State>>(app.wsPath, {
    maxPayloadLength: options.ws.maxPayloadBytes,
    maxBackpressure: options.ws.maxBackpressureBytes,
    // uWS counts timeouts in 4 s ticks from wherever the current one is: a cut fell up to 4 s before the
    // setting. One tick more makes it at least the setting, at most 4 s after (7 s for a setting that is not
    // a multiple of 4: uWS rounds it up); 960 s is uWS's most, so a setting from 957 may still fall short.
    idleTimeout: Math.min(options.ws.idleTimeoutSec + 4, 960),
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => {
      const protocol = req.getHeader("sec-websocket-protocol");
      const extensions = req.getHeader("sec-websocket-extensions");
      const headers = readHeaders(req);
      const url = req.getUrl();
      const query = req.getQuery() ?? "";
      if (headBytes(url, query, headers) > MAX_HEAD_BYTES) return refuse(res, HEAD_TOO_LARGE);
      const problem = framingProblem(
        headers.get("content-length"),
        headers.get("transfer-encoding"),
        headers.get("host"),
      );
      if (problem !== undefined) return refuse(res, framingRefusal(problem));
      const request = new UwsHttpRequest(res, req, url, query, headers, 0);
      const key = headers.get("sec-websocket-key");
      // uWS takes any GET with a 24-character key here: what is no handshake goes to the router, as on Bun.
      if (!isWebSocketHandshake(request.method, headers.get("upgrade"), key))
        return void answer(app, request);
      app.ws.upgrade(request).then(
        (decision) => {
          if (!decision.accept) request.reply(decision.reply);
          else request.upgrade({ state: decision.state }, key, protocol, extensions, context);
        },
        () => request.reply(INTERNAL_ERROR),
      );
    },
    open: (socket) => {
      const data = socket.getUserData();
      data.peer = createPeer(socket, data.state);
      app.ws.open(data.peer);
    },
    message: (socket, message, isBinary) => {
      const peer = socket.getUserData().peer;
      if (peer) app.ws.message(peer, isBinary ? binaryFrameText(message) : textDecoder.decode(message));
    },
    drain: (socket) => {
      const peer = socket.getUserData().peer;
      if (peer) app.ws.drain(peer);
    },
    close: (socket, code) => {
      const peer = socket.getUserData().peer;
      if (!peer) return;
      peer.markClosed();
      app.ws.close(peer, code);
    },
  });

  server.any("/*", (res, req) => {
    const headers = readHeaders(req);
    const url = req.getUrl();
    const query = req.getQuery() ?? "";
    if (headBytes(url, query, headers) > MAX_HEAD_BYTES) return refuse(res, HEAD_TOO_LARGE);
    const problem = framingProblem(
      headers.get("content-length"),
      headers.get("transfer-encoding"),
      headers.get("host"),
    );
    if (problem !== undefined) return refuse(res, framingRefusal(problem));
    answer(app, new UwsHttpRequest(res, req, url, query, headers, options.maxBodyBytes));
  });

  const listenSocket = await new Promise<UwsListenSocket>((resolve, reject) => {
    // uWS sets SO_REUSEPORT unless told otherwise, and a second process on a busy
    // port would then silently take half the connections.
    const flags = options.reusePort ? 0 : LIBUS_LISTEN_EXCLUSIVE_PORT;
    // The (host, port, options, cb) overload exists in the addon but not in its typings.
    (server.listen as unknown as ListenWithOptions)(options.host, options.port, flags, (token) => {
      if (token) resolve(token);
      else reject(new Error("the port is in use or the address is not available"));
    });
  });
  let listening = true;

  return {
    port: uws.us_socket_local_port(listenSocket),
    runtime: "node-uws",
    publish: (topic, text) => {
      server.publish(topic, text, false);
    },
    stopListening: () => {
      if (!listening) return;
      listening = false;
      uws.us_listen_socket_close(listenSocket);
    },
  };
}

/** The answer to a request whose handler failed unexpectedly (the router maps every known error itself). */
const INTERNAL_ERROR: HttpReply = { status: 500, body: "" };

/** Runs the core on one request and writes its reply, unless the client went away meanwhile. */
async function answer<State>(app: GatewayApp<State>, request: UwsHttpRequest): Promise<void> {
  let reply: HttpReply;
  try {
    reply = await app.http(request);
  } catch {
    reply = INTERNAL_ERROR;
  }
  request.reply(reply, request.method === "HEAD");
}

/**
 * Copies what the core needs out of the uWS request, which is only valid
 * until this handler returns, starts collecting the body at once (uWS
 * requires onData to be attached synchronously), and watches for the client
 * going away: then the body rejects, so a handler never waits forever on an
 * upload that stopped (and the drain never waits on such a request).
 * A class rather than an object of closures: one is made per request, so its methods are shared.
 */
class UwsHttpRequest implements HttpRequest {
  readonly method: string;
  readonly path: string;
  /** Set once the client went away or the reply was written: `res` may no longer be touched. */
  private closed = false;
  private readonly rawQuery: string;
  private parsedQuery: URLSearchParams | undefined;
  private address: string | undefined;
  private readonly bodyBytes: Promise<Uint8Array>;
  private abortBody: ((error: Error) => void) | undefined;
  /** The body being received; undefined when there is none. */
  private collector: BodyCollector | undefined;
  /** The whole body has come (or there is none). */
  private bodyReceived = false;
  /** The body's Content-Length; undefined when chunked. */
  private readonly announcedBodyBytes: number | undefined;
  /** The client went away: `res` may no longer be touched (a reply waiting a turn is dropped). */
  private aborted = false;
  /** The open streaming response, told when the client goes away. */
  private stream: UwsStream | undefined;

  constructor(
    private readonly res: UwsResponse,
    req: UwsRequest,
    /** The request's path and query as uWS read them (`getUrl`, `getQuery`). */
    url: string,
    query: string,
    private readonly headers: Map<string, string>,
    maxBodyBytes: number,
  ) {
    this.method = req.getCaseSensitiveMethod().toUpperCase();
    this.path = resolvedPath(url);
    this.rawQuery = query;
    res.onAborted(() => {
      this.closed = true;
      this.aborted = true;
      this.abortBody?.(clientClosed());
      this.stream?.aborted();
    });
    this.announcedBodyBytes = parseContentLength(headers.get("content-length"));
    this.bodyReceived = METHODS_WITHOUT_BODY.has(this.method) || this.announcedBodyBytes === 0;
    this.bodyBytes = this.bodyReceived
      ? Promise.resolve(new Uint8Array(0))
      : new Promise<Uint8Array>((resolve, reject) => {
          this.abortBody = reject;
          const received = (body: Uint8Array) => {
            this.bodyReceived = true;
            resolve(body);
          };
          this.collector = new BodyCollector(res, maxBodyBytes, this.announcedBodyBytes, received, reject);
        });
    // The core may answer without reading the body (401, 415, ...): keep that rejection handled.
    this.bodyBytes.catch(() => {});
  }

  /**
   * Read on first use, not up front: uWS formats the address into a new
   * ArrayBuffer (about 1 µs), and most requests never ask (rate limits off, or
   * behind a proxy). The response stays valid until it is answered or
   * aborted; a request whose client already left has no address.
   */
  get remoteAddress(): string {
    this.address ??= this.closed ? "" : peerAddress(this.res);
    return this.address;
  }

  /** Parsed only when a handler asks: most requests never read the query. */
  get query(): URLSearchParams {
    this.parsedQuery ??= new URLSearchParams(this.rawQuery);
    return this.parsedQuery;
  }

  header(name: string): string | undefined {
    return this.headers.get(name);
  }

  headerNames(): Iterable<string> {
    return this.headers.keys();
  }

  body(): Promise<Uint8Array> {
    return this.bodyBytes;
  }

  /** Completes a WebSocket upgrade unless the client went away. */
  upgrade<State>(
    data: SocketData<State>,
    key: string,
    protocol: string,
    extensions: string,
    context: UwsSocketContext,
  ): void {
    if (this.closed) return;
    this.closed = true;
    this.res.cork(() => this.res.upgrade(data, key, protocol, extensions, context));
  }

  /** Writes `reply` (corked: one send) unless the client went away. */
  reply(reply: HttpReply, head = false): void {
    const listener = reply.stream;
    if (this.closed) {
      listener?.closed();
      return;
    }
    if (listener && !head) {
      const stream = new UwsStream(this.res, listener);
      this.stream = stream;
      this.res.cork(() => {
        this.res.writeStatus(statusAndHeaders(reply));
        this.res.write(reply.body);
      });
      listener.open(stream);
      return;
    }
    this.closed = true;
    if (this.bodyReceived || reply.closeConnection) this.write(reply, head);
    else {
      // Answered before its body came (a 401, a 415, a refusal). uWS hands over body bytes it already
      // holds only after the handler returns, and Node runs the microtasks answering without I/O first:
      // so the decision waits a turn, for what came with the head.
      setImmediate(() => {
        if (this.aborted) return;
        // Answered without it: what still comes of the body is not kept, on a connection left open too.
        if (!this.bodyReceived) this.collector?.drop();
        this.write(this.bodyReceived ? reply : this.closingIfUploading(reply), head);
      });
    }
    // HEAD: the head of a stream, which never opens.
    listener?.closed();
  }

  private write(reply: HttpReply, head: boolean): void {
    this.res.cork(() => writeReply(this.res, reply, head, this.headers.get("connection")?.length === 5));
  }

  /**
   * Closes the connection of an answer whose large or chunked body is still arriving: left open, uWS
   * goes on receiving the upload for as long as the client takes to send it (a client holding
   * uploads open after their 401 held 1 MiB each, before their buffers were let go at the answer).
   */
  private closingIfUploading(reply: HttpReply): HttpReply {
    const small = this.announcedBodyBytes !== undefined && this.announcedBodyBytes <= SMALL_BODY_BYTES;
    return small ? reply : { ...reply, closeConnection: true };
  }
}

/**
 * A streaming response on uWS: chunked, corked writes. uWS buffers whatever
 * the socket does not take (it never drops), so the bytes written since a
 * write first reported backpressure, until the socket is writable again,
 * stand for what the client has not read.
 */
class UwsStream implements HttpStream {
  private done = false;
  private buffered = 0;

  constructor(
    private readonly res: UwsResponse,
    private readonly listener: StreamListener,
  ) {}

  write(text: string): boolean {
    if (this.done) return false;
    this.res.cork(() => {
      if (this.res.write(text)) return;
      if (this.buffered === 0)
        this.res.onWritable(() => {
          this.buffered = 0;
          return true;
        });
      this.buffered += text.length;
    });
    return true;
  }

  bufferedAmount(): number {
    return this.buffered;
  }

  end(): void {
    if (this.done) return;
    this.res.cork(() => this.res.end());
    this.finish();
  }

  abort(): void {
    if (this.done) return;
    this.res.close();
    this.finish();
  }

  /** The client went away: `res` may no longer be touched. */
  aborted(): void {
    if (!this.done) this.finish();
  }

  private finish(): void {
    this.done = true;
    this.listener.closed();
  }
}

/**
 * The peer's address as text. An IPv4 peer's four bytes are formatted here:
 * decoding uWS's text form with TextDecoder cost about 0.5 µs more per
 * request (the address is read on every request while per-IP limits are on).
 * Other addresses keep uWS's own text form.
 */
function peerAddress(res: UwsResponse): string {
  const binary = res.getRemoteAddress();
  if (binary.byteLength !== 4) return textDecoder.decode(res.getRemoteAddressAsText());
  const bytes = new Uint8Array(binary);
  return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
}

/** Header values by lower-case name; a repeated header is joined with ", " as in fetch's Headers (and on Bun). */
function readHeaders(req: UwsRequest): Map<string, string> {
  const headers = new Map<string, string>();
  req.forEach((name, value) => {
    const earlier = headers.get(name);
    headers.set(name, earlier === undefined ? value : `${earlier}, ${value}`);
  });
  return headers;
}

/** Bun.serve's answer: no body, never counted (it does not reach the gateway's router there either). */
const HEAD_TOO_LARGE: HttpReply = { status: 431, body: "", closeConnection: true };
/** `GET ` + ` HTTP/1.1\r\n` and the blank line ending the head, bytes of every head: a method's length is about 4. */
const HEAD_FRAMING_BYTES = 4 + 11 + 2;

/** The size of the request's head as sent, give or take a few bytes of whitespace and method. */
function headBytes(url: string, query: string, headers: Map<string, string>): number {
  let bytes = HEAD_FRAMING_BYTES + url.length + (query === "" ? 0 : query.length + 1);
  // `name: value\r\n` each (a repeated header is joined with ", ": about as long).
  for (const [name, value] of headers) bytes += name.length + value.length + 4;
  return bytes;
}

/**
 * Answers a request refused before the core sees it (ambiguous framing, a head
 * too large) and closes, one turn of the event loop later on purpose: uWS
 * goes on parsing the bytes it already read once this handler returns, and
 * answers a request smuggled there if this response is already complete;
 * while it is pending, uWS drops the connection instead.
 */
function refuse(res: UwsResponse, reply: HttpReply): void {
  let aborted = false;
  res.onAborted(() => {
    aborted = true;
  });
  setImmediate(() => {
    if (!aborted) res.cork(() => writeReply(res, reply));
  });
}

/**
 * `head`: answer a HEAD request, with the Content-Length of the body left out.
 * `engineCloses`: uWS closes the connection after this answer on its own, as it does for a request
 * whose `Connection` value is 5 characters long (meant: `close`; its own test), and then writes no
 * `Connection: close`.
 * A 204 (a CORS preflight) has neither a body nor a Content-Length.
 * The status line and every header go to uWS in one `writeStatus` call, which
 * writes its text verbatim and then CRLF: each call into the addon costs about
 * 0.15 µs, a string concatenation far less. Header names and values are the
 * gateway's own (none copies request text unchecked), so none holds a CR or LF.
 */
function writeReply(res: UwsResponse, reply: HttpReply, head = false, engineCloses = false): void {
  const statusText = statusAndHeaders(reply);
  const closing = reply.closeConnection === true ? "\r\nconnection: close" : "";
  // Neither a 204 nor a HEAD answer goes through end(), which would say `Content-Length: 0`: a 204
  // must not carry one (RFC 9110 §8.6), a HEAD answer carries GET's (a drain's HEAD /health said 0).
  // Nor can endWithoutBody close the connection without announcing a length (see below), so
  // `Connection: close` is written by hand, and the client, told so, closes (RFC 9112 §9.6).
  if (reply.status === 204) {
    res.writeStatus(statusText + closing);
    res.endWithoutBody();
  } else if (head) {
    // Not endWithoutBody(length): this uWS version then waits for the body it announced (and
    // reads an explicit undefined as a huge length). So the length is written by hand. A
    // stream's GET is chunked, its length unknown: its HEAD says so too, not its first chunk's.
    const framing = reply.stream ? "transfer-encoding: chunked" : `content-length: ${byteLength(reply.body)}`;
    res.writeStatus(`${statusText}\r\n${framing}${closing}`);
    res.endWithoutBody();
  } else if (reply.closeConnection === true || engineCloses) {
    // end(body, true) writes `Connection: close` itself, except when uWS already closes because of the
    // request (`engineCloses`); then it is written by hand, since the answer should say so too.
    res.writeStatus(engineCloses ? statusText + closing : statusText);
    res.end(reply.body, reply.closeConnection === true);
  } else {
    res.writeStatus(statusText);
    // tryEnd (total 0: this body is all of it) writes what the socket takes and nothing while it still
    // holds unsent bytes. end() would buffer the rest, without bound: uWS answers requests pipelined in
    // one read at once, so a client pipelining and never reading held every answer (4 connections of
    // 3,000 GET /metrics: 505 MiB). Unfinished, the answer is pending: uWS closes the connection at the
    // next request pipelined behind it, and drops it after 10 s without progress.
    if (!res.tryEnd(reply.body, 0)[1]) finishWhenWritable(res, reply.body);
  }
}

/**
 * Writes the rest of an answer that tryEnd could not finish as the socket drains. `offset`: the body's
 * bytes written so far. uWS calls no handler of a response after its onAborted (every request has one).
 */
function finishWhenWritable(res: UwsResponse, body: string | Uint8Array): void {
  const bytes = typeof body === "string" ? Buffer.from(body) : body;
  res.onWritable((offset) => res.tryEnd(bytes.subarray(offset), bytes.byteLength)[0]);
}

/**
 * The status line and every header, as one text for `writeStatus` (see
 * `writeReply`); the shared block's text as it is, and the reply's own
 * headers but those the block overrides.
 */
function statusAndHeaders(reply: HttpReply): string {
  let text = statusLine(reply.status);
  const headers = reply.headers;
  const shared = reply.sharedHeaders;
  if (shared === undefined) {
    for (const name in headers) text += `\r\n${name}: ${headers[name]}`;
    return text;
  }
  const overridden = shared.fields;
  for (const name in headers) if (!(name in overridden)) text += `\r\n${name}: ${headers[name]}`;
  return text + shared.text;
}

function byteLength(body: string | Uint8Array): number {
  return typeof body === "string" ? Buffer.byteLength(body) : body.byteLength;
}

function createPeer<State>(socket: UwsSocket<SocketData<State>>, state: State): EnginePeer<State> {
  return new EnginePeer(state, {
    send: (text) => {
      const status = socket.send(text, false);
      return status === 1 ? "sent" : status === 0 ? "queued" : "dropped";
    },
    subscribe: (topic) => socket.subscribe(topic),
    unsubscribe: (topic) => socket.unsubscribe(topic),
    bufferedAmount: () => socket.getBufferedAmount(),
    close: (code, reason) => socket.end(code, reason),
  });
}
