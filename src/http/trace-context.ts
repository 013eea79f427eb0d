import type { HttpRequest } from "../ports/transport.ts";

/** W3C Trace Context (https://www.w3.org/TR/trace-context/) of a request, found valid; the traceparent in version 00. */
export interface TraceContext {
  traceparent: string;
  tracestate?: string;
}

/**
 * `version-traceid-parentid-flags`, lower-case hex. A version above 00 may
 * append fields (`-…`); version ff is invalid. All-zero ids are invalid.
 */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE_ID = "0".repeat(32);
const ZERO_PARENT_ID = "0".repeat(16);
/** tracestate: at most 32 list members of `key=value`, 512 characters in all (the spec's limits a receiver may apply). */
const MAX_TRACESTATE_LENGTH = 512;
const MAX_TRACESTATE_MEMBERS = 32;
const TRACESTATE_MEMBER =
  /^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

/**
 * The request's `traceparent` (see `traceparentOf`) and `tracestate` when the
 * traceparent is valid (an invalid one is ignored, with its tracestate, as the
 * spec asks of a receiver, never refused); an invalid tracestate alone is
 * dropped. Costs one header lookup when there is none.
 */
export function traceContextOf(request: Pick<HttpRequest, "header">): TraceContext | undefined {
  const received = request.header("traceparent");
  const traceparent = received === undefined ? undefined : traceparentOf(received);
  if (traceparent === undefined) return undefined;
  const tracestate = request.header("tracestate");
  return tracestate !== undefined && isValidTracestate(tracestate)
    ? { traceparent, tracestate }
    : { traceparent };
}

/**
 * The traceparent to propagate for a received `value`, or undefined when it
 * is invalid. A later version than 00 is read for the fields of 00 and passed
 * on as version 00 (W3C Trace Context, "Versioning of traceparent": the new
 * traceparent is built from them in the highest version the vendor knows), so
 * its unknown fields, of any length, never reach a Kafka header or a frame.
 */
export function traceparentOf(value: string): string | undefined {
  const match = TRACEPARENT.exec(value);
  if (!match) return undefined;
  const [, version, traceId, parentId, flags, rest] = match;
  if (version === "ff" || traceId === ZERO_TRACE_ID || parentId === ZERO_PARENT_ID) return undefined;
  if (version === "00") return rest === undefined ? value : undefined;
  return `00-${traceId}-${parentId}-${flags}`;
}

function isValidTracestate(value: string): boolean {
  if (value.length > MAX_TRACESTATE_LENGTH) return false;
  const members = value
    .split(",")
    .map((member) => member.trim())
    .filter((member) => member !== "");
  return (
    members.length <= MAX_TRACESTATE_MEMBERS && members.every((member) => TRACESTATE_MEMBER.test(member))
  );
}
