import type { Principal } from "../domain/principal.ts";

/** Verifies bearer tokens. */
export interface Authenticator {
  /**
   * The principal of a valid token; rejects with a GatewayError otherwise:
   * `unauthorized` (401) for a bad token, `unavailable` (503, Retry-After)
   * when its signing keys cannot be fetched (the token may be fine: retry it).
   */
  verify(token: string): Promise<Principal>;
}
