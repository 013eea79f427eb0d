import type { Principal } from "../domain/principal.ts";

/** Verifies bearer tokens. */
export interface Authenticator {
  /** The principal of a valid token; rejects with a 401 GatewayError otherwise. */
  verify(token: string): Promise<Principal>;
}
