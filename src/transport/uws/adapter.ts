import type {
  HttpRequest as UwsRequest,
  HttpResponse as UwsResponse,
  WebSocket as UwsSocket,
} from "uWebSockets.js";
import uws from "uWebSockets.js";
import { statusLine } from "../../http/status-text.ts";
import type {
  GatewayApp,
  HttpReply,
  HttpRequest,
  ListenOptions,
  RunningServer,
} from "../../ports/transport.ts";
import { BodyBuffer, clientClosed, parseContentLength } from "../body-buffer.ts";
import { framingProblem, framingRefusal } from "../framing.ts";
import { EnginePeer } from "../peer.ts";

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
  cb: (listenSocket: uws.us_listen_socket | false) => void,
) => void;

const METHODS_WITHOUT_BODY = new Set(["GET", "HEAD", "OPTIONS", "DELETE"]);
const textDecoder = new TextDecoder();

/** Node adapter: maps uWebSockets.js onto the transport seam. */
export async function listen<State>(app: GatewayApp<State>, options: ListenOptions): Promise<RunningServer> {
  const server = uws.App();

  server.ws<SocketData<State>>(app.wsPath, {
    maxPayloadLength: options.ws.maxPayloadBytes,
    maxBackpressure: options.ws.maxBackpressureBytes,
    idleTimeout: options.ws.idleTimeoutSec,
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => {
      const key = req.getHeader("sec-websocket-key");
      const protocol = req.getHeader("sec-websocket-protocol");
      const extensions = req.getHeader("sec-websocket-extensions");
      const headers = readHeaders(req);
      const problem = framingProblem(headers.get("content-length"), headers.get("transfer-encoding"));
      if (problem !== undefined) return refuseFraming(res, problem);
      const { request, aborted } = readRequest(res, req, headers, 0);
      app.ws.upgrade(request).then(
        (decision) => {
          if (aborted()) return;
          res.cork(() => {
            if (decision.accept) res.upgrade({ state: decision.state }, key, protocol, extensions, context);
            else writeReply(res, decision.reply);
          });
        },
        () => {
          if (!aborted()) res.cork(() => writeReply(res, { status: 500, body: "" }));
        },
      );
    },
    open: (socket) => {
      const data = socket.getUserData();
      data.peer = createPeer(socket, data.state);
      app.ws.open(data.peer);
    },
    message: (socket, message) => {
      const peer = socket.getUserData().peer;
      if (peer) app.ws.message(peer, textDecoder.decode(message));
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
    const problem = framingProblem(headers.get("content-length"), headers.get("transfer-encoding"));
    if (problem !== undefined) return refuseFraming(res, problem);
    const { request, aborted } = readRequest(res, req, headers, options.maxBodyBytes);
    app.http(request).then(
      (reply) => {
        if (!aborted()) res.cork(() => writeReply(res, reply, request.method === "HEAD"));
      },
      () => {
        if (!aborted()) res.cork(() => writeReply(res, { status: 500, body: "" }));
      },
    );
  });

  const listenSocket = await new Promise<uws.us_listen_socket>((resolve, reject) => {
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

/**
 * Copies everything the core may need out of the uWS request, which is only
 * valid until this handler returns, starts collecting the body at once (uWS
 * requires onData to be attached synchronously), and watches for the client
 * going away: then the body rejects, so a handler never waits forever on an
 * upload that stopped (and the drain never waits on such a request).
 */
function readRequest(
  res: UwsResponse,
  req: UwsRequest,
  headers: Map<string, string>,
  maxBodyBytes: number,
): { request: HttpRequest; aborted: () => boolean } {
  const request = new UwsHttpRequest(res, req, headers, maxBodyBytes);
  return { request, aborted: () => request.aborted };
}

/** A class rather than an object of closures: one is made per request, so its methods are shared. */
class UwsHttpRequest implements HttpRequest {
  readonly method: string;
  readonly path: string;
  readonly remoteAddress: string;
  aborted = false;
  private readonly rawQuery: string;
  private parsedQuery: URLSearchParams | undefined;
  private readonly bodyBytes: Promise<Uint8Array>;
  private abortBody: ((error: Error) => void) | undefined;

  constructor(
    res: UwsResponse,
    req: UwsRequest,
    private readonly headers: Map<string, string>,
    maxBodyBytes: number,
  ) {
    this.method = req.getCaseSensitiveMethod().toUpperCase();
    this.path = req.getUrl();
    this.rawQuery = req.getQuery() ?? "";
    this.remoteAddress = textDecoder.decode(res.getRemoteAddressAsText());
    res.onAborted(() => {
      this.aborted = true;
      this.abortBody?.(clientClosed());
    });
    this.bodyBytes = METHODS_WITHOUT_BODY.has(this.method)
      ? Promise.resolve(new Uint8Array(0))
      : new Promise<Uint8Array>((resolve, reject) => {
          this.abortBody = reject;
          collectBody(res, maxBodyBytes, parseContentLength(headers.get("content-length")), resolve, reject);
        });
    // The core may answer without reading the body (401, 415, ...): keep that rejection handled.
    this.bodyBytes.catch(() => {});
  }

  /** Parsed only when a handler asks: most requests never read the query. */
  get query(): URLSearchParams {
    this.parsedQuery ??= new URLSearchParams(this.rawQuery);
    return this.parsedQuery;
  }

  header(name: string): string | undefined {
    return this.headers.get(name);
  }

  body(): Promise<Uint8Array> {
    return this.bodyBytes;
  }
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

/**
 * Answers 400 and closes, one turn of the event loop later on purpose: uWS
 * goes on parsing the bytes it already read once this handler returns, and
 * answers a request smuggled there if this response is already complete;
 * while it is pending, uWS drops the connection instead.
 */
function refuseFraming(res: UwsResponse, problem: string): void {
  let aborted = false;
  res.onAborted(() => {
    aborted = true;
  });
  setImmediate(() => {
    if (!aborted) res.cork(() => writeReply(res, framingRefusal(problem)));
  });
}

function collectBody(
  res: UwsResponse,
  limit: number,
  contentLength: number | undefined,
  resolve: (body: Uint8Array) => void,
  reject: (error: unknown) => void,
): void {
  let buffer: BodyBuffer;
  try {
    buffer = new BodyBuffer(limit, contentLength);
  } catch (error) {
    reject(error);
    return;
  }
  let failed = false;
  res.onData((chunk, isLast) => {
    if (failed) return;
    try {
      buffer.append(new Uint8Array(chunk));
    } catch (error) {
      failed = true;
      reject(error);
      return;
    }
    if (isLast) resolve(buffer.bytes());
  });
}

/** `head`: answer a HEAD request, with the Content-Length of the body left out. */
function writeReply(res: UwsResponse, reply: HttpReply, head = false): void {
  res.writeStatus(statusLine(reply.status));
  if (reply.headers) {
    for (const name in reply.headers) res.writeHeader(name, reply.headers[name] as string);
  }
  if (head && reply.closeConnection !== true) {
    // Not endWithoutBody(length): this uWS version then waits for the body it announced (and
    // reads an explicit undefined as a huge length). So the length is written by hand.
    res.writeHeader("content-length", String(byteLength(reply.body)));
    res.endWithoutBody();
  } else res.end(head ? "" : reply.body, reply.closeConnection === true);
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
