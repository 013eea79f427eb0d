import { isGatewayError } from "../../domain/errors.ts";
import { clientIp } from "../../http/client-ip.ts";
import { addRateLimitFields, type RateLimitPolicy } from "../../http/rate-limit-fields.ts";
import type { Admission } from "../../ports/admission.ts";
import { ALLOWED, type RateLimits } from "./limiter.ts";
import type { TenantQuotas } from "./tenant-quotas.ts";

export interface AdmissionOptions {
  /** false turns every limit off (benchmarks). */
  enabled: boolean;
  /** X-Forwarded-For hops to trust for the client IP. */
  trustProxyHops: number;
}

/** The limiter's budgets are per one-second window. */
const WINDOW_SEC = 1;
const NO_RATE_LIMIT_HEADERS: Promise<Record<string, string>> = Promise.resolve(Object.freeze({}));

/** The rate limits as features ask for them: per IP, per tenant (with its own quota), per IP connects. */
export function createAdmission(
  limits: RateLimits,
  quotas: TenantQuotas | undefined,
  options: AdmissionOptions,
): Admission {
  if (!options.enabled) {
    // Shared settled promises: every request awaits these, none needs a new one.
    return { request: () => ALLOWED, events: () => NO_RATE_LIMIT_HEADERS, connection: () => ALLOWED };
  }
  return {
    // The per-IP budget's headers are sent only with its 429.
    request: (request) =>
      orRefused(limits.allow("ip_requests", clientIp(request, options.trustProxyHops)), refusedByIp),
    events: (principal, cost) =>
      limits
        .admit("tenant_events", principal.tenant, cost, quotas?.eventsPerSec(principal.tenant))
        .then(admittedWithFields, refusedByTenant),
    connection: (ip) => orRefused(limits.allow("ws_connect", ip), refusedByConnects),
  };
}

/** The RateLimit-Policy and RateLimit fields beside the legacy headers of an admitted tenant batch. */
const admittedWithFields = (headers: Record<string, string>) =>
  addRateLimitFields(headers, "tenant", WINDOW_SEC);

/** Most checks are paid from the local slice (ALLOWED): no 429 to decorate, so no promise or microtask more per request. */
const orRefused = (allowed: Promise<void>, refused: (error: unknown) => never): Promise<void> =>
  allowed === ALLOWED ? allowed : allowed.catch(refused);

/** The same fields on a 429 of each policy, which is rethrown. */
const refusedByTenant = (error: unknown) => refuse(error, "tenant");
const refusedByIp = (error: unknown) => refuse(error, "ip");
const refusedByConnects = (error: unknown) => refuse(error, "ip-connects");

function refuse(error: unknown, policy: RateLimitPolicy): never {
  if (isGatewayError(error)) addRateLimitFields(error.headers, policy, WINDOW_SEC);
  throw error;
}
