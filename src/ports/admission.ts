import type { Principal } from "../domain/principal.ts";
import type { HttpRequest } from "./transport.ts";

/** The rate limits a feature obeys; each rejects with a 429 GatewayError when over budget. */
export interface Admission {
  /** Per client IP, one request: checked before the token or the body. */
  request(request: HttpRequest): Promise<void>;
  /** Per tenant, `cost` events; resolves with the RateLimit-* headers to answer with. */
  events(principal: Principal, cost: number): Promise<Record<string, string>>;
  /** Per client IP, one WebSocket connection attempt. */
  connection(ip: string): Promise<void>;
}
