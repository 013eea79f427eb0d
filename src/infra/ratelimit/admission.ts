import { isGatewayError } from "../../domain/errors.ts";
import { clientIp } from "../../http/client-ip.ts";
import { AdmittedFields, addRateLimitFields, type RateLimitPolicy } from "../../http/rate-limit-fields.ts";
import type { Admission, AdmittedHeaders } from "../../ports/admission.ts";
import { ALLOWED, NOT_LOCAL, type RateLimits } from "./limiter.ts";
import type { TenantQuotas } from "./tenant-quotas.ts";

export interface AdmissionOptions {
  /** false turns every limit off (benchmarks). */
  enabled: boolean;
  /** X-Forwarded-For hops to trust for the client IP. */
  trustProxyHops: number;
}

/** The limiter's budgets are per one-second window. */
const WINDOW_SEC = 1;

/** The rate limits as features ask for them: per IP, per tenant (with its own quota), per IP connects. */
export function createAdmission(
  limits: RateLimits,
  quotas: TenantQuotas | undefined,
  options: AdmissionOptions,
): Admission {
  if (!options.enabled) {
    // Nothing to wait for and no headers: nothing allocated or merged per request.
    return {
      request: () => undefined,
      read: () => undefined,
      events: () => undefined,
      connection: () => ALLOWED,
    };
  }
  const tenantFields = new AdmittedFields("tenant", WINDOW_SEC);
  const ipFields = new AdmittedFields("ip", WINDOW_SEC);
  /** Admitted after a lease: the limiter's legacy headers, as the fields of the fast path. */
  const afterLease = (fields: AdmittedFields) => (headers: Record<string, string>) =>
    fields.headers(
      Number(headers["ratelimit-limit"]),
      Number(headers["ratelimit-remaining"]),
      Number(headers["ratelimit-reset"]),
    );
  const admittedAfterLease = afterLease(tenantFields);
  const readAfterLease = afterLease(ipFields);
  return {
    // The write routes answer with the tenant's fields: the per-IP budget's are sent only with its 429.
    request: (request) => {
      const allowed = limits.allow("ip_requests", clientIp(request, options.trustProxyHops));
      return allowed === ALLOWED ? undefined : allowed.catch(refusedByIp);
    },
    read: (request): AdmittedHeaders | Promise<AdmittedHeaders> => {
      const ip = clientIp(request, options.trustProxyHops);
      const remaining = limits.spendLocally("ip_requests", ip, 1);
      if (remaining === NOT_LOCAL) return limits.admit("ip_requests", ip).then(readAfterLease, refusedByIp);
      return ipFields.headers(limits.limitOf("ip_requests"), remaining, WINDOW_SEC);
    },
    events: (principal, cost): AdmittedHeaders | Promise<AdmittedHeaders> => {
      const budget = quotas?.eventsPerSec(principal.tenant);
      const remaining = limits.spendLocally("tenant_events", principal.tenant, cost, budget);
      if (remaining === NOT_LOCAL) {
        return limits
          .admit("tenant_events", principal.tenant, cost, budget)
          .then(admittedAfterLease, refusedByTenant);
      }
      // The local slice lasts no longer than the window: the reset is within it.
      return tenantFields.headers(limits.limitOf("tenant_events", budget), remaining, WINDOW_SEC);
    },
    connection: (ip) => orRefused(limits.allow("ws_connect", ip), refusedByConnects),
  };
}

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
