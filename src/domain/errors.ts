/**
 * The catalogue of errors the gateway answers with. Every error has a stable
 * `code` (part of the public contract: clients branch on it) and the HTTP
 * status it maps to. Modules throw `GatewayError`; only the HTTP edge
 * (`toErrorReply`) turns one into a response.
 */
export const ERROR_STATUS = {
  bad_request: 400,
  malformed_json: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  /** A request with the same Idempotency-Key is still being handled. */
  idempotency_in_flight: 409,
  history_gone: 410,
  payload_too_large: 413,
  record_too_large: 413,
  unsupported_media_type: 415,
  all_rejected: 422,
  record_refused: 422,
  /** The Idempotency-Key was used before with another request body. */
  idempotency_key_reused: 422,
  rate_limited: 429,
  /** The client went away before its request was read (nginx's 499): not a server fault. */
  client_closed_request: 499,
  internal: 500,
  overloaded: 503,
  /** A replay bound was hit (concurrent replays, time): retry after Retry-After. */
  try_again: 503,
  unavailable: 503,
  draining: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class GatewayError extends Error {
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Extra response headers, e.g. Retry-After. */
    readonly headers: Record<string, string> = {},
    /** Extra fields merged into the JSON body. */
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = "GatewayError";
    this.status = ERROR_STATUS[code];
  }
}

export function isGatewayError(error: unknown): error is GatewayError {
  return error instanceof GatewayError;
}
