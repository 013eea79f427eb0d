import { SignJWT } from "jose";

export interface DevTokenOptions {
  secret: string;
  tenant: string;
  scopes: string[];
  sub?: string;
  ttlSec?: number;
  channels?: string[];
  /** `iss` and `aud`, for a gateway that checks them (JWT_ISSUER, JWT_AUDIENCE). */
  issuer?: string;
  audience?: string;
}

/** Signs an HS256 token with the claims the gateway expects; for development and tests. */
export async function signDevToken(options: DevTokenOptions): Promise<string> {
  const claims: Record<string, unknown> = { tenant: options.tenant, scope: options.scopes.join(" ") };
  if (options.channels) claims.channels = options.channels;
  if (options.issuer) claims.iss = options.issuer;
  if (options.audience) claims.aud = options.audience;
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(options.sub ?? "dev")
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + (options.ttlSec ?? 3600))
    .sign(new TextEncoder().encode(options.secret));
}
