import { type Principal, requireScope } from "../domain/principal.ts";
import type { Admission } from "../ports/admission.ts";
import type { HttpRequest } from "../ports/transport.ts";

export interface CallerChecks {
  admission: Pick<Admission, "request">;
  authenticate(request: HttpRequest): Promise<Principal>;
}

/**
 * The checks an API write starts with, cheapest first: the client's IP budget
 * (so a client over it costs no signature check and no body read), its token,
 * then the scope the route needs. Rejects with a 429, 401 or 403 GatewayError.
 */
export async function authorizedCaller(
  request: HttpRequest,
  scope: string,
  checks: CallerChecks,
): Promise<Principal> {
  await checks.admission.request(request);
  const principal = await checks.authenticate(request);
  requireScope(principal, scope);
  return principal;
}
