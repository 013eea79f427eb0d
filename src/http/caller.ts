import { type Principal, requireScope } from "../domain/principal.ts";
import type { Admission, AdmittedHeaders } from "../ports/admission.ts";
import type { HttpRequest } from "../ports/transport.ts";

export interface CallerChecks {
  admission: Pick<Admission, "request">;
  /** The principal at once when its token was verified before (cached), else a promise of it. */
  authenticate(request: HttpRequest): Principal | Promise<Principal>;
}

/**
 * The checks an API write starts with, cheapest first: the client's IP budget
 * (so a client over it costs no signature check and no body read), its token,
 * then the scope the route needs. Throws or rejects with a 429, 401 or 403 GatewayError.
 *
 * The usual caller (IP paid from the local share, token cached) gets its
 * principal back at once: no promise, and no await in the route for it.
 */
export function authorizedCaller(
  request: HttpRequest,
  scope: string,
  checks: CallerChecks,
): Principal | Promise<Principal> {
  const admitted = checks.admission.request(request);
  if (admitted !== undefined) return admitted.then(() => authenticated(request, scope, checks));
  return authenticated(request, scope, checks);
}

/** The checks a read route starts with: as a write's, with the IP budget's RateLimit fields for its answer. */
export interface ReaderChecks {
  admission: Pick<Admission, "read">;
  authenticate(request: HttpRequest): Principal | Promise<Principal>;
}

/**
 * `authorizedCaller` for the read routes (history, presence, event streams):
 * the same checks in the same order, and the `ip` policy's RateLimit fields,
 * which their 2xx carry as every limited route's does.
 */
export async function authorizedReader(
  request: HttpRequest,
  scope: string,
  checks: ReaderChecks,
): Promise<{ principal: Principal; rateLimit: AdmittedHeaders }> {
  const admitted = checks.admission.read(request);
  const rateLimit = admitted instanceof Promise ? await admitted : admitted;
  const principal = await authenticated(request, scope, checks);
  return { principal, rateLimit };
}

function authenticated(
  request: HttpRequest,
  scope: string,
  checks: Pick<CallerChecks, "authenticate">,
): Principal | Promise<Principal> {
  const principal = checks.authenticate(request);
  if (principal instanceof Promise) return principal.then((verified) => withScope(verified, scope));
  return withScope(principal, scope);
}

function withScope(principal: Principal, scope: string): Principal {
  requireScope(principal, scope);
  return principal;
}
