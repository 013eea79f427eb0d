import { GatewayError } from "../domain/errors.ts";

/**
 * The token of an `Authorization: Bearer <token>` header. The 401s carry
 * RFC 6750's challenge: a bare `Bearer` when the request holds no bearer
 * token (no header, or another scheme, which the RFC answers without an
 * error code), `error="invalid_request"` when it holds one malformed (no
 * token, extra words, two headers joined into one); the RFC's status for
 * that is 400, but the contract answers every missing or bad token with 401.
 */
export function bearerToken(authorization: string | undefined): string {
  if (!authorization)
    throw new GatewayError("unauthorized", "missing bearer token", { "www-authenticate": "Bearer" });
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  if (!match) {
    const challenge = /^Bearer(?:\s|$)/i.test(authorization)
      ? 'Bearer error="invalid_request", error_description="malformed Authorization header"'
      : "Bearer";
    throw new GatewayError("unauthorized", "malformed Authorization header", {
      "www-authenticate": challenge,
    });
  }
  return match[1] as string;
}
