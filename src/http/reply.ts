import { GatewayError, isGatewayError } from "../errors/errors.ts";
import type { HttpReply } from "../transport/types.ts";

const JSON_TYPE = { "content-type": "application/json" };

export function json(status: number, body: unknown, headers?: Record<string, string>): HttpReply {
  return { status, headers: headers ? { ...JSON_TYPE, ...headers } : JSON_TYPE, body: JSON.stringify(body) };
}

/**
 * The one place where errors become HTTP responses. Unknown errors become a
 * generic 500 (their details go to the log, not to the client).
 */
export function errorReply(error: unknown): HttpReply {
  const gatewayError = isGatewayError(error) ? error : new GatewayError("internal", "internal error");
  const reply = json(
    gatewayError.status,
    { error: gatewayError.code, message: gatewayError.message, ...gatewayError.details },
    // Also here, for errors answered outside the router (refused upgrades, malformed framing).
    { ...gatewayError.headers, "x-content-type-options": "nosniff" },
  );
  // After an oversize body the rest of the upload is not read; close instead.
  if (gatewayError.code === "payload_too_large") reply.closeConnection = true;
  return reply;
}
