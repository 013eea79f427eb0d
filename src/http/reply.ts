import { GatewayError, isGatewayError } from "../domain/errors.ts";
import type { HeaderBlock, HttpReply } from "../ports/transport.ts";
import { headerBlock, joinBlocks } from "./header-block.ts";

/** Frozen: shared by replies, and an adapter may keep what it builds from it (Bun's Headers). */
const JSON_TYPE = Object.freeze({ "content-type": "application/json" });
const JSON_BLOCK = headerBlock(JSON_TYPE);

/**
 * `shared`: headers this reply shares with others (a budget's RateLimit
 * fields), made once; `headers` are then this reply's own (its remaining count).
 */
export function json(
  status: number,
  body: unknown,
  headers?: Readonly<Record<string, string>>,
  shared?: HeaderBlock,
): HttpReply {
  return jsonText(status, JSON.stringify(body), headers, shared);
}

/** A JSON reply whose body the caller serialised already. */
export function jsonText(
  status: number,
  text: string,
  headers?: Readonly<Record<string, string>>,
  shared?: HeaderBlock,
): HttpReply {
  // The content type joins the shared block: no headers object merged per reply.
  if (shared !== undefined)
    return { status, headers, sharedHeaders: joinBlocks(JSON_BLOCK, shared), body: text };
  // Object.assign, not a spread: cheaper on Node (see the router's policy headers).
  return {
    status,
    headers: headers ? Object.assign({ "content-type": "application/json" }, headers) : JSON_TYPE,
    body: text,
  };
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
