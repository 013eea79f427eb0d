/**
 * A development stand-in for your application's token endpoint, shared by the
 * examples' servers: `GET /token` answers a short-lived gateway token signed
 * with the gateway's dev secret (or JWT_SECRET). A real application checks
 * its own session first and gets the token from its identity provider; the
 * page only ever sees short-lived tokens and asks again before they expire.
 */
import { DEV_JWT_SECRET } from "../src/config/config.ts";
import { signDevToken } from "../src/infra/auth/dev-token.ts";

export interface DevTokenOptions {
  /** Default: JWT_SECRET, else the gateway's dev-mode secret. */
  secret?: string;
  tenant?: string;
  scopes: string[];
  /** The `channels` claim: channel patterns the token may use (`[]`: none). Default: no claim. */
  channels?: string[];
  /** Short on purpose, so the client's refresh is exercised. Default 300 s. */
  ttlSec?: number;
}

export interface DevTokenIssuer {
  /** Tokens handed out so far. */
  readonly issued: number;
  respond(): Promise<Response>;
}

export function devTokenIssuer(options: DevTokenOptions): DevTokenIssuer {
  let issued = 0;
  return {
    get issued() {
      return issued;
    },
    async respond() {
      const token = await signDevToken({
        secret: options.secret ?? (process.env.JWT_SECRET || DEV_JWT_SECRET),
        tenant: options.tenant ?? "acme",
        scopes: options.scopes,
        channels: options.channels,
        ttlSec: options.ttlSec ?? 300,
      });
      issued++;
      return new Response(token, { headers: { "content-type": "text/plain", "cache-control": "no-store" } });
    },
  };
}
