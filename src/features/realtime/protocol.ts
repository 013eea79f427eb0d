import { isEventId } from "../../domain/event-id.ts";
import { type TraceContext, traceContextOf } from "../../http/trace-context.ts";
import {
  DEPTH_ERROR,
  DUPLICATE_KEY_ERROR,
  JsonScanner,
  jsonProblem,
  MAX_JSON_DEPTH,
  SYNTAX_ERROR,
} from "../../lib/json-scan.ts";

/** Frames a client may send, after parsing and shape checks. */
export type ClientFrame =
  | { type: "auth"; token: string }
  | { type: "subscribe"; channel: string; since: string | undefined; presence: boolean }
  | { type: "unsubscribe"; channel: string }
  | { type: "ping" }
  | PublishFrame;

/** A publish to a channel (or the tenant's broadcast), answered `published` once Kafka acknowledged. */
export interface PublishFrame {
  type: "publish";
  /** Checked by the publisher against the token. */
  channel: unknown;
  broadcast: boolean;
  /** `data` exactly as sent (a parse and re-serialisation would alter numbers); `null` when absent. */
  dataJson: string;
  /** Echoed in the answer, so a client can match it to its publish. */
  ref: string | undefined;
  /** A valid `traceparent` (with its `tracestate`); an invalid one is ignored, as on HTTP. */
  trace: TraceContext | undefined;
}

/** Client frames are flat objects; anything nested deeper is refused before it is parsed. */
const MAX_DEPTH = 8;
/** Longest frame type echoed back in an error. */
const MAX_ECHOED_TYPE = 32;
/** Longest `ref` of a publish frame (it is echoed back). */
export const MAX_REF_LENGTH = 64;

/**
 * Why a frame was refused; `ref` is a refused publish frame's own, echoed so
 * the client can match the refusal to its publish (which otherwise waits for
 * an answer that never comes).
 */
export interface FrameRefusal {
  error: string;
  ref?: string;
}

/**
 * Parses one frame's text (undefined: a binary frame whose bytes are not
 * UTF-8); never throws, returns `{ error }` with a readable reason instead.
 */
export function parseClientFrame(text: string | undefined): ClientFrame | FrameRefusal {
  if (text === undefined) return { error: "frames are UTF-8 JSON text" };
  // Checked before JSON.parse: deep nesting costs a scan, never a deep parse or a RangeError.
  const bytes = Buffer.from(text);
  const problem = jsonProblem(bytes, MAX_DEPTH);
  if (problem === DEPTH_ERROR) return deepFrame(bytes, text);
  if (problem === SYNTAX_ERROR) return { error: "frames are JSON text" };
  const value: unknown = JSON.parse(text);
  if (value === null || typeof value !== "object" || Array.isArray(value))
    return { error: "a frame is a JSON object" };
  const frame = value as Record<string, unknown>;
  switch (frame.type) {
    case "auth":
      return typeof frame.token === "string"
        ? { type: "auth", token: frame.token }
        : { error: "auth needs a token" };
    case "subscribe": {
      if (typeof frame.channel !== "string") return { error: "subscribe needs a channel" };
      // null is absent: what a client writes for "no value" (`since: lastId ?? null`, Python's None).
      const since = frame.since ?? undefined;
      const presence = frame.presence ?? undefined;
      // A malformed `since` is a client bug: said as such, not as `history_gone` (lost history).
      if (since !== undefined && (typeof since !== "string" || !isEventId(since)))
        return { error: "since must be an event id" };
      if (presence !== undefined && typeof presence !== "boolean")
        return { error: "presence must be true or false" };
      return { type: "subscribe", channel: frame.channel, since, presence: presence === true };
    }
    case "unsubscribe":
      return typeof frame.channel === "string"
        ? { type: "unsubscribe", channel: frame.channel }
        : { error: "unsubscribe needs a channel" };
    case "ping":
      return { type: "ping" };
    case "publish":
      return publishFrame(text, frame);
    default:
      // Only a short string is echoed: the reply never costs more than the frame's shape.
      return typeof frame.type === "string" && frame.type.length <= MAX_ECHOED_TYPE
        ? { error: `unknown frame type ${JSON.stringify(frame.type)}` }
        : { error: "unknown frame type" };
  }
}

/**
 * A frame nested deeper than a client frame may: a publish, whose `data` may
 * nest as deep as in a `POST /v1/publish` body (the frame has the body's
 * shape), is read at the body's bound; anything else, or deeper, is refused
 * (naming no `ref`: a frame too deep for any JSON body is not parsed).
 */
function deepFrame(bytes: Uint8Array, text: string): PublishFrame | FrameRefusal {
  const tooDeep = { error: `frames nest at most ${MAX_DEPTH} levels (a publish ${MAX_JSON_DEPTH})` };
  const problem = jsonProblem(bytes, MAX_JSON_DEPTH);
  if (problem === SYNTAX_ERROR) return { error: "frames are JSON text" };
  if (problem !== undefined) return tooDeep;
  const frame: unknown = JSON.parse(text);
  return frame !== null && typeof frame === "object" && (frame as { type?: unknown }).type === "publish"
    ? publishFrame(text, frame as Record<string, unknown>)
    : tooDeep;
}

function isRef(ref: unknown): ref is string {
  return typeof ref === "string" && ref.length <= MAX_REF_LENGTH;
}

function publishFrame(text: string, frame: Record<string, unknown>): PublishFrame | FrameRefusal {
  if (frame.ref !== undefined && !isRef(frame.ref))
    return { error: `ref must be a string of at most ${MAX_REF_LENGTH} characters` };
  const ref = frame.ref;
  const refused = (error: string): FrameRefusal => (ref === undefined ? { error } : { error, ref });
  if (frame.broadcast !== undefined && typeof frame.broadcast !== "boolean")
    return refused("broadcast must be true or false");
  if (frame.broadcast !== true && frame.channel === undefined) return refused("publish needs a channel");
  const header = (name: string): string | undefined => {
    const value = frame[name];
    return typeof value === "string" ? value : undefined;
  };
  // Its `data` is forwarded byte for byte: a key twice would be read differently by different consumers.
  const bytes = Buffer.from(text);
  const scanner = new JsonScanner(bytes, { rejectDuplicateKeys: true });
  let data: { start: number; end: number } | undefined;
  try {
    data = scanner.record().data;
  } catch (failure) {
    if (failure === DUPLICATE_KEY_ERROR)
      return refused(`duplicate key ${JSON.stringify(scanner.duplicateKey)}`);
    return refused("frames are JSON text");
  }
  return {
    type: "publish",
    channel: frame.channel,
    broadcast: frame.broadcast === true,
    dataJson: data ? bytes.toString("utf8", data.start, data.end) : "null",
    ref,
    trace: traceContextOf({ header }),
  };
}
