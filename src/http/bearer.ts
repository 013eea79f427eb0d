import { GatewayError } from "../domain/errors.ts";

/** The token of an `Authorization: Bearer <token>` header. */
export function bearerToken(authorization: string | undefined): string {
  if (!authorization)
    throw new GatewayError("unauthorized", "missing bearer token", { "www-authenticate": "Bearer" });
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  if (!match) {
    throw new GatewayError("unauthorized", "malformed Authorization header", {
      "www-authenticate": "Bearer",
    });
  }
  return match[1] as string;
}
