import { clientIp } from "../../http/client-ip.ts";
import type { Admission } from "../../ports/admission.ts";
import type { RateLimits } from "./limiter.ts";
import type { TenantQuotas } from "./tenant-quotas.ts";

export interface AdmissionOptions {
  /** false turns every limit off (benchmarks). */
  enabled: boolean;
  /** X-Forwarded-For hops to trust for the client IP. */
  trustProxyHops: number;
}

const ADMITTED: Promise<void> = Promise.resolve();
const NO_RATE_LIMIT_HEADERS: Promise<Record<string, string>> = Promise.resolve(Object.freeze({}));

/** The rate limits as features ask for them: per IP, per tenant (with its own quota), per IP connects. */
export function createAdmission(
  limits: RateLimits,
  quotas: TenantQuotas | undefined,
  options: AdmissionOptions,
): Admission {
  if (!options.enabled) {
    // Shared settled promises: every request awaits these, none needs a new one.
    return { request: () => ADMITTED, events: () => NO_RATE_LIMIT_HEADERS, connection: () => ADMITTED };
  }
  return {
    request: (request) => limits.allow("ip_requests", clientIp(request, options.trustProxyHops)),
    events: (principal, cost) =>
      limits.admit("tenant_events", principal.tenant, cost, quotas?.eventsPerSec(principal.tenant)),
    connection: (ip) => limits.allow("ws_connect", ip),
  };
}
