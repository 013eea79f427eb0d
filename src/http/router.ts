import { GatewayError } from "../domain/errors.ts";
import type { Logger } from "../log/logger.ts";
import type { Metrics } from "../metrics/metrics.ts";
import type { Route } from "../ports/route.ts";
import type { HeaderBlock, HttpReply, HttpRequest, UpgradeDecision, WsHandlers } from "../ports/transport.ts";
import { type CorsPolicy, isPreflight } from "./cors.ts";
import { deprecationHeaders } from "./deprecation.ts";
import { headerBlock, joinBlocks } from "./header-block.ts";
import { errorReply } from "./reply.ts";

/** On every response: a browser must never sniff a body into something it renders. */
const COMMON_HEADERS = { "x-content-type-options": "nosniff" };
/** `/v1` responses hold tenant data, which no browser or shared cache may keep. */
const TENANT_DATA_HEADERS = { ...COMMON_HEADERS, "cache-control": "no-store" };

interface RequestSeries {
  requests: ReturnType<Metrics["httpRequests"]["child"]>;
  duration: ReturnType<Metrics["httpDuration"]["child"]>;
}

/**
 * The policy headers of replies, by the CORS headers of the request's origin
 * (one object per allowed origin, see CorsPolicy; undefined without CORS):
 * made on first use, bounded by the configured origins.
 */
type BlocksByCors = Map<Readonly<Record<string, string>> | undefined, HeaderBlock>;

interface CompiledRoute extends Route {
  pattern: RegExp | undefined;
  paramNames: string[];
  /** Headers added to every response of this route (its deprecation), built once. */
  routeHeaders: Record<string, string> | undefined;
  /** Its request metrics by status, for requests with its own method: no key string built per request. */
  seriesByStatus: Map<number, RequestSeries>;
  /** The policy headers of its replies (with routeHeaders). */
  blocks: BlocksByCors;
}

/**
 * Matches requests to routes, maps errors to responses, records metrics by
 * route template (never the raw path) and counts requests in flight so the
 * drain can wait for them. It is also the one place where response policy is
 * applied: nosniff, no-store on tenant data, the deprecation headers of a
 * route being retired, and CORS (preflights, response headers, and the
 * origin check on WebSocket upgrades).
 */
export class Router {
  private readonly exact = new Map<string, CompiledRoute[]>();
  private readonly patterned: CompiledRoute[] = [];
  private inFlight = 0;
  private readonly series = new Map<string, RequestSeries>();
  private readonly knownMethods = new Set(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]);
  private idleWaiters: Array<() => void> = [];
  /** Draining: every reply closes its connection, so no keep-alive connection sits idle until the exit cuts it. */
  private closingConnections = false;
  /** Policy headers of replies no route answered (404, 405, preflights, refused upgrades), by path kind. */
  private readonly tenantDataBlocks: BlocksByCors = new Map();
  private readonly commonBlocks: BlocksByCors = new Map();

  constructor(
    routes: Route[],
    private readonly metrics: Metrics,
    private readonly log: Logger,
    /** Unset: no CORS headers at all. */
    private readonly cors?: CorsPolicy,
    /** The WebSocket path: the engines take its upgrades; what reaches the router there is not one. */
    private readonly upgradePath?: string,
  ) {
    for (const route of routes) this.add(route);
    metrics.inFlightRequests.sampleFrom(() => this.inFlight);
  }

  private add(route: Route): void {
    const paramNames: string[] = [];
    const routeHeaders = route.deprecation && deprecationHeaders(route.deprecation);
    if (!route.path.includes("{")) {
      const list = this.exact.get(route.path) ?? [];
      list.push({
        ...route,
        pattern: undefined,
        paramNames,
        routeHeaders,
        seriesByStatus: new Map(),
        blocks: new Map(),
      });
      this.exact.set(route.path, list);
      return;
    }
    const source = route.path.replace(/\{(\w+)\}/g, (_, name: string) => {
      paramNames.push(name);
      return "([^/]+)";
    });
    this.patterned.push({
      ...route,
      pattern: new RegExp(`^${source}$`),
      paramNames,
      routeHeaders,
      seriesByStatus: new Map(),
      blocks: new Map(),
    });
  }

  readonly handle = async (request: HttpRequest): Promise<HttpReply> => {
    const started = performance.now();
    this.inFlight++;
    let routeName = "unmatched";
    let route: CompiledRoute | undefined;
    let reply: HttpReply;
    try {
      const match = this.match(request);
      routeName = match.routeName;
      route = match.route;
      reply = await match.run();
    } catch (error) {
      if (!(error instanceof GatewayError))
        this.log.error({ err: error, route: routeName }, "request failed");
      else if (error.code === "client_closed_request")
        this.log.debug({ code: error.code, route: routeName }, "client went away mid-request");
      reply = errorReply(error);
    } finally {
      this.inFlight--;
      if (this.inFlight === 0) this.wakeIdleWaiters();
    }
    const series =
      route !== undefined && request.method === route.method
        ? this.routeSeries(route, reply.status)
        : this.seriesFor(routeName, request.method, reply.status);
    series.requests.inc();
    series.duration.observe((performance.now() - started) / 1000);
    return this.withPolicyHeaders(request, reply, route);
  };

  /**
   * The headers every response gets, whichever handler or error produced it,
   * as one shared block (no headers object merged per request). A route's
   * deprecation headers are in its block: errors of a deprecated route say
   * so too, since a client may only ever see those.
   */
  private withPolicyHeaders(request: HttpRequest, reply: HttpReply, route?: CompiledRoute): HttpReply {
    const cors = this.cors?.responseHeaders(request.header("origin"));
    const path = route === undefined ? request.path : route.path;
    const tenantData = path === "/v1" || path.startsWith("/v1/");
    const blocks = route?.blocks ?? (tenantData ? this.tenantDataBlocks : this.commonBlocks);
    let block = blocks.get(cors);
    if (block === undefined) {
      const policy = tenantData ? TENANT_DATA_HEADERS : COMMON_HEADERS;
      block = headerBlock({ ...route?.routeHeaders, ...policy, ...cors });
      blocks.set(cors, block);
    }
    // Field by field: `{ ...reply, sharedHeaders }` took about 3 µs on Node 20 (a spread that adds a property).
    return {
      status: reply.status,
      headers: reply.headers,
      // A reply's own block (a budget's RateLimit fields) under the policy, joined once per pair.
      sharedHeaders: reply.sharedHeaders === undefined ? block : joinBlocks(reply.sharedHeaders, block),
      body: reply.body,
      closeConnection: reply.closeConnection || this.closingConnections || asksToClose(request),
      stream: reply.stream,
    };
  }

  /**
   * The WebSocket handlers with upgrades held to the same policy as HTTP: a
   * browser origin not allowed is refused with 403, and every refusal carries
   * the policy headers. Each upgrade is counted as a request of the WebSocket
   * path (101 when accepted, else the refusal's status): the engines take
   * upgrades before `handle`, and without this a 503 of the connection caps
   * would never reach the 5xx ratio the runbooks send operators to. An
   * upgrade asking for another WebSocket version than 13 is refused here too
   * (426 naming 13, RFC 6455 §4.4), so it is counted as refused: uWebSockets.js
   * upgrades any version, and Bun.serve refuses it only after the core accepted.
   * The rest is passed through.
   */
  guardUpgrades<State>(handlers: WsHandlers<State>): WsHandlers<State> {
    const refuseVersion = () => ({
      accept: false as const,
      reply: errorReply(
        new GatewayError(
          "upgrade_required",
          `this server speaks WebSocket version ${WEBSOCKET_VERSION} only`,
          {
            "sec-websocket-version": WEBSOCKET_VERSION,
          },
        ),
      ),
    });
    const refuseOrigin = () => ({
      accept: false as const,
      reply: errorReply(new GatewayError("forbidden", "this origin may not open WebSockets (CORS_ORIGINS)")),
    });
    return {
      upgrade: async (request): Promise<UpgradeDecision<State>> => {
        const started = performance.now();
        const decision =
          request.header("sec-websocket-version") !== WEBSOCKET_VERSION
            ? refuseVersion()
            : this.cors?.refusesUpgrade(request.header("origin"))
              ? refuseOrigin()
              : await handlers.upgrade(request);
        const series = this.seriesFor(
          request.path,
          request.method,
          decision.accept ? 101 : decision.reply.status,
        );
        series.requests.inc();
        series.duration.observe((performance.now() - started) / 1000);
        return decision.accept
          ? decision
          : { accept: false, reply: this.withPolicyHeaders(request, decision.reply) };
      },
      open: (peer) => handlers.open(peer),
      message: (peer, text) => handlers.message(peer, text),
      drain: (peer) => handlers.drain(peer),
      close: (peer, code) => handlers.close(peer, code),
    };
  }

  /**
   * The labelled children of the request metrics, looked up once per
   * route/method/status (`metrics/resolved.ts`: no label hashing per request). Bounded:
   * routes and methods come from the table ("unmatched" otherwise), statuses from the catalogue.
   */
  private routeSeries(route: CompiledRoute, status: number): RequestSeries {
    let series = route.seriesByStatus.get(status);
    if (!series) {
      series = this.seriesFor(route.path, route.method, status);
      route.seriesByStatus.set(status, series);
    }
    return series;
  }

  private seriesFor(route: string, requestMethod: string, status: number): RequestSeries {
    const method = this.knownMethods.has(requestMethod) ? requestMethod : "OTHER";
    const key = `${route} ${method} ${status}`;
    let series = this.series.get(key);
    if (!series) {
      const labels = { route, method, status: String(status) };
      series = {
        requests: this.metrics.httpRequests.child(labels),
        duration: this.metrics.httpDuration.child(labels),
      };
      this.series.set(key, series);
    }
    return series;
  }

  /** From now on each reply closes its connection (`Connection: close`): the drain has begun. */
  closeConnectionsAfterReplies(): void {
    this.closingConnections = true;
  }

  /** Resolves once no request is being handled. */
  whenIdle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private wakeIdleWaiters(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const wake of waiters) wake();
  }

  private match(request: HttpRequest): RouteMatch {
    const candidates = this.exact.get(request.path);
    if (candidates) return this.pick(candidates, request, {});
    if (request.path === this.upgradePath) {
      const error = notAnUpgrade(request);
      return {
        routeName: request.path,
        run: () => {
          throw error;
        },
      };
    }
    for (const route of this.patterned) {
      const found = route.pattern?.exec(request.path);
      if (!found) continue;
      const rawParams: Record<string, string> = {};
      route.paramNames.forEach((name, index) => {
        rawParams[name] = found[index + 1] as string;
      });
      return this.pick(
        this.patterned.filter((other) => other.path === route.path),
        request,
        rawParams,
      );
    }
    throw new GatewayError("not_found", `no route for ${request.path}`);
  }

  /** `rawParams` are still percent-encoded: decoded only for the handler, so a bad one is a 400 on its route. */
  private pick(routes: CompiledRoute[], request: HttpRequest, rawParams: Record<string, string>): RouteMatch {
    const route =
      routes.find((candidate) => candidate.method === request.method) ??
      // HEAD is GET without the body; the adapters leave the body out.
      (request.method === "HEAD" ? routes.find((candidate) => candidate.method === "GET") : undefined);
    const path = (routes[0] as CompiledRoute).path;
    if (!route) {
      const methods = allowedMethods(routes);
      if (this.cors && isPreflight(request.method, request.header("access-control-request-method"))) {
        const cors = this.cors;
        return { routeName: path, run: () => answerPreflight(cors, request, methods) };
      }
      // With CORS on, the path answers OPTIONS too (its preflights), so Allow lists it (RFC 9110 §10.2.1);
      // but not in the 405 to a plain OPTIONS, which would name the very method it refuses.
      const plainOptions = request.method === "OPTIONS" && this.cors !== undefined;
      const allow = (this.cors && !plainOptions ? [...methods, "OPTIONS"] : methods).join(", ");
      const message = plainOptions
        ? `use ${allow} on ${path}: OPTIONS is answered as a CORS preflight, with Access-Control-Request-Method`
        : `use ${allow} on ${path}`;
      return {
        routeName: path,
        run: () => {
          throw new GatewayError("method_not_allowed", message, { allow });
        },
      };
    }
    return {
      routeName: path,
      route,
      run: () => route.handler(request, decodeParams(rawParams)),
    };
  }
}

interface RouteMatch {
  routeName: string;
  /** Set when one route (not only its path) matched. */
  route?: CompiledRoute;
  run: () => Promise<HttpReply> | HttpReply;
}

/**
 * The request carries the `close` connection option. Both engines close the
 * connection after answering it, but neither says so; RFC 9112 §9.6 asks the
 * answer to carry `Connection: close` too, so a client or proxy knows the
 * connection ends rather than finding out on its next request.
 */
function asksToClose(request: HttpRequest): boolean {
  const connection = request.header("connection");
  return connection !== undefined && /(?:^|,)\s*close\s*(?:,|$)/i.test(connection);
}

/** The one WebSocket version spoken (RFC 6455), the only `Sec-WebSocket-Version` upgraded. */
const WEBSOCKET_VERSION = "13";

/**
 * Why a request to the WebSocket path that the engine did not upgrade is
 * refused: another method (405), an upgrade asked for but malformed or in a
 * HEAD (400), or no upgrade asked for at all (426 naming the protocol, RFC 9110 §15.5.22).
 */
function notAnUpgrade(request: HttpRequest): GatewayError {
  if (request.method !== "GET" && request.method !== "HEAD")
    return new GatewayError("method_not_allowed", `use GET on ${request.path}: a WebSocket upgrade`, {
      allow: "GET, HEAD",
    });
  if (request.header("upgrade")?.toLowerCase() === "websocket")
    return new GatewayError(
      "bad_request",
      request.method === "HEAD"
        ? "not a valid WebSocket handshake: it must be a GET (RFC 6455 §4.1)"
        : "not a valid WebSocket handshake: Sec-WebSocket-Key is missing or malformed",
    );
  return new GatewayError("upgrade_required", `${request.path} takes only WebSocket upgrades`, {
    upgrade: "websocket",
  });
}

/** A preflight from an origin not allowed is a 403 (and gets no CORS headers). */
function answerPreflight(cors: CorsPolicy, request: HttpRequest, methods: string[]): HttpReply {
  if (!cors.allows(request.header("origin")))
    throw new GatewayError("forbidden", "this origin may not call the API (CORS_ORIGINS)");
  return cors.preflight(methods, request.header("access-control-request-headers"));
}

function allowedMethods(routes: CompiledRoute[]): string[] {
  const methods = routes.map((route) => route.method);
  if (methods.includes("GET") && !methods.includes("HEAD")) methods.push("HEAD");
  return methods;
}

function decodeParams(rawParams: Record<string, string>): Record<string, string> {
  const params: Record<string, string> = {};
  for (const name in rawParams) {
    try {
      params[name] = decodeURIComponent(rawParams[name] as string);
    } catch {
      throw new GatewayError("bad_request", `malformed percent-encoding in path parameter "${name}"`);
    }
  }
  return params;
}
