/**
 * The transport seam. The gateway core speaks only these types; one adapter
 * per runtime (uWebSockets.js on Node, Bun.serve on Bun) maps its engine onto
 * them and holds no business logic.
 */

export interface HttpRequest {
  /** Upper-case method. */
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  /** Header value by lower-case name. */
  header(name: string): string | undefined;
  /** The lower-case names of the headers sent (a binary-mode CloudEvent's extensions are any `ce-*`). */
  headerNames(): Iterable<string>;
  /** Peer address of the TCP connection. */
  readonly remoteAddress: string;
  /**
   * The whole body, read once. Rejects with a `payload_too_large`
   * GatewayError as soon as it exceeds the adapter's body limit, without
   * buffering the rest.
   */
  body(): Promise<Uint8Array>;
}

export interface HttpReply {
  status: number;
  headers?: Record<string, string>;
  /** Not changed once returned: the adapter may write it later, as the client reads (uWS onWritable). */
  body: string | Uint8Array;
  /**
   * Headers shared by many replies (the router's response policy, joined
   * under a handler's own block such as a budget's RateLimit fields), written
   * after `headers`; a name in both is written once, with this block's value.
   */
  sharedHeaders?: HeaderBlock;
  /** Close the connection after replying (used after an oversize body). */
  closeConnection?: boolean;
  /**
   * A response that stays open (Server-Sent Events): the adapter writes the
   * status and headers, then `body` as the first chunk, and hands the open
   * stream to `stream.open`. Ignored for HEAD.
   */
  stream?: StreamListener;
}

/** Header fields made once and shared by replies; never changed (see http/header-block.ts). */
export interface HeaderBlock {
  readonly fields: Readonly<Record<string, string>>;
  /** `\r\n<name>: <value>` for each field, in order: what an HTTP/1.1 writer appends to the head. */
  readonly text: string;
}

/** One open streaming response, as the core sees it. */
export interface HttpStream {
  /** Writes a chunk; false when the response is already closed (nothing is written then). */
  write(text: string): boolean;
  /** Bytes written and not yet taken by the socket: how far the client lags behind. */
  bufferedAmount(): number;
  /** Ends the response (the connection stays open for the next request). */
  end(): void;
  /** Drops the connection and whatever it has not sent yet (a client that stopped reading). */
  abort(): void;
}

export interface StreamListener {
  /** The head and first chunk are written; from now on the core writes through `stream`. */
  open(stream: HttpStream): void;
  /** The response ended, by `end()` or because the client went away; called once. */
  closed(): void;
}

export type SendResult = "sent" | "queued" | "dropped";

/** One open WebSocket as the core sees it. Valid from `open` until `close`. */
export interface WsPeer<State> {
  readonly state: State;
  send(text: string): SendResult;
  subscribe(topic: string): void;
  unsubscribe(topic: string): void;
  /** Bytes queued for this peer and not yet written to the socket. */
  bufferedAmount(): number;
  close(code: number, reason: string): void;
}

/** What the core decides when a client asks to upgrade to WebSocket. */
export type UpgradeDecision<State> = { accept: true; state: State } | { accept: false; reply: HttpReply };

export interface WsHandlers<State> {
  upgrade(request: HttpRequest): Promise<UpgradeDecision<State>>;
  open(peer: WsPeer<State>): void;
  /** `text` is undefined for a binary frame whose bytes are not UTF-8 (see `binaryFrameText`). */
  message(peer: WsPeer<State>, text: string | undefined): void;
  drain(peer: WsPeer<State>): void;
  close(peer: WsPeer<State>, code: number): void;
}

export interface WsLimits {
  maxPayloadBytes: number;
  /** Engine-level cap on queued bytes; past it the engine drops frames. */
  maxBackpressureBytes: number;
  idleTimeoutSec: number;
}

/** Everything an adapter needs from the core. */
export interface GatewayApp<State> {
  http(request: HttpRequest): Promise<HttpReply>;
  /** The one path where WebSocket upgrades are accepted. */
  wsPath: string;
  ws: WsHandlers<State>;
}

export interface ListenOptions {
  host: string;
  port: number;
  /** Several processes share the port (WORKERS > 1); otherwise a port in use fails the listen. */
  reusePort: boolean;
  maxBodyBytes: number;
  ws: WsLimits;
  /**
   * Seconds a request's body may take from its head before the connection is
   * closed (the slow-client bound); 10, uWebSockets.js's own (fixed) bound,
   * unless a test of the Bun adapter shortens it.
   */
  httpIdleTimeoutSec?: number;
  /**
   * Seconds an idle keep-alive connection (after an answer, no request under
   * way) stays open; default 10. Bun only: uWebSockets.js's is fixed at 10.
   */
  httpKeepAliveSec?: number;
}

export interface RunningServer {
  readonly port: number;
  readonly runtime: "node-uws" | "bun";
  /** Publish to every peer subscribed to `topic`; one serialisation for all. */
  publish(topic: string, text: string): void;
  /** Stop accepting new connections; open ones keep working. */
  stopListening(): void;
}

export type Listen = <State>(app: GatewayApp<State>, options: ListenOptions) => Promise<RunningServer>;
