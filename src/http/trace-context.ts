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
/** tracestate: at most 32 list members of `key=value`; cut to 512 characters, the least the spec asks to propagate. */
const MAX_TRACESTATE_LENGTH = 512;
const MAX_TRACESTATE_MEMBERS = 32;
/** Members longer than this are the first the spec has cut from a tracestate too long. */
const LONG_TRACESTATE_MEMBER = 128;
const TRACESTATE_MEMBER =
  /^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

/**
 * The request's `traceparent` (see `traceparentOf`) and `tracestate` when the
 * traceparent is valid (an invalid one is ignored, with its tracestate, as the
 * spec asks of a receiver, never refused); an invalid tracestate alone is
 * dropped, a long one cut (see `tracestateOf`). Costs one header lookup when
 * there is none.
 */
export function traceContextOf(request: Pick<HttpRequest, "header">): TraceContext | undefined {
  const receivedParent = request.header("traceparent");
  const traceparent = receivedParent === undefined ? undefined : traceparentOf(receivedParent);
  if (traceparent === undefined) return undefined;
  const receivedState = request.header("tracestate");
  const tracestate = receivedState === undefined ? undefined : tracestateOf(receivedState);
  return tracestate === undefined ? { traceparent } : { traceparent, tracestate };
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

/**
 * The tracestate to propagate for a received `value`, or undefined when it is
 * invalid: more than 32 members, one that is not `key=value`, or a key named
 * twice (W3C Trace Context: such a tracestate is invalid, and a vendor that
 * cannot parse it must not propagate it; the traceparent still is). One over
 * 512 characters is cut by whole members as the spec asks: those over 128
 * characters go first, then members from the end, until it fits.
 */
export function tracestateOf(value: string): string | undefined {
  const members = value
    .split(",")
    .map((member) => member.trim())
    .filter((member) => member !== "");
  if (
    members.length > MAX_TRACESTATE_MEMBERS ||
    !members.every((member) => TRACESTATE_MEMBER.test(member)) ||
    hasDuplicateKey(members)
  )
    return undefined;
  if (value.length <= MAX_TRACESTATE_LENGTH) return value;
  let kept = members;
  for (let index = kept.length - 1; index >= 0 && kept.join(",").length > MAX_TRACESTATE_LENGTH; index--) {
    if ((kept[index] as string).length > LONG_TRACESTATE_MEMBER)
      kept = [...kept.slice(0, index), ...kept.slice(index + 1)];
  }
  while (kept.join(",").length > MAX_TRACESTATE_LENGTH) kept = kept.slice(0, -1);
  return kept.length === 0 ? undefined : kept.join(",");
}

/** Whether two of `members` (each `key=value`) share a key. */
function hasDuplicateKey(members: readonly string[]): boolean {
  // Most tracestates hold one or two members: no set for them.
  if (members.length < 2) return false;
  const keys = new Set<string>();
  for (const member of members) {
    const key = member.slice(0, member.indexOf("="));
    if (keys.has(key)) return true;
    keys.add(key);
  }
  return false;
}
