import type { Principal } from "../domain/principal.ts";
import type { HeaderBlock, HttpRequest } from "./transport.ts";

/**
 * The RateLimit-* headers of an admitted request: those that stay while the
 * budget does, made once and shared by the replies (`shared`), and this
 * request's remaining count (`own`).
 */
export interface RateLimitFields {
  readonly own: Readonly<Record<string, string>>;
  readonly shared: HeaderBlock;
}

/** The RateLimit-* headers to answer an admitted request with; undefined when limits are off. */
export type AdmittedHeaders = RateLimitFields | undefined;

/** The rate limits a feature obeys; each rejects with a 429 GatewayError when over budget. */
export interface Admission {
  /**
   * Per client IP, one request: checked before the token or the body.
   * undefined when admitted at once (limits off, or paid from the local
   * share): the caller goes on without a promise or an await.
   */
  request(request: HttpRequest): Promise<void> | undefined;
  /**
   * Per client IP, one request of a read route (event streams, history,
   * presence), as `request`, but answered with the `ip` policy's RateLimit
   * fields for the route's 2xx (it spends no tenant budget whose fields it
   * could carry instead): at once when paid from the local share, else a
   * promise of them that rejects with the 429.
   */
  read(request: HttpRequest): AdmittedHeaders | Promise<AdmittedHeaders>;
  /**
   * Per tenant, `cost` events: the headers at once when the instance's own
   * share of the budget paid (no promise, nothing to wait for), else a
   * promise of them that rejects with the 429.
   */
  events(principal: Principal, cost: number): AdmittedHeaders | Promise<AdmittedHeaders>;
  /** Per client IP, one WebSocket connection attempt. */
  connection(ip: string): Promise<void>;
}
