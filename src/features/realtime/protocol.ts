import { isEventId } from "../../domain/event-id.ts";
import { type TraceContext, traceContextOf } from "../../http/trace-context.ts";
import {
  DEPTH_ERROR,
  DUPLICATE_KEY_ERROR,
  JsonScanner,
  jsonProblem,
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
 * Parses one frame's text (undefined: a binary frame whose bytes are not
 * UTF-8); never throws, returns `{ error }` with a readable reason instead.
 */
export function parseClientFrame(text: string | undefined): ClientFrame | { error: string } {
  if (text === undefined) return { error: "frames are UTF-8 JSON text" };
  // Checked before JSON.parse: deep nesting costs a scan, never a deep parse or a RangeError.
  const problem = jsonProblem(Buffer.from(text), MAX_DEPTH);
  if (problem === DEPTH_ERROR) return { error: `frames nest at most ${MAX_DEPTH} levels` };
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
    case "subscribe":
      if (typeof frame.channel !== "string") return { error: "subscribe needs a channel" };
      // A malformed `since` is a client bug: said as such, not as `history_gone` (lost history).
      if (frame.since !== undefined && (typeof frame.since !== "string" || !isEventId(frame.since)))
        return { error: "since must be an event id" };
      if (frame.presence !== undefined && typeof frame.presence !== "boolean")
        return { error: "presence must be true or false" };
      return {
        type: "subscribe",
        channel: frame.channel,
        since: frame.since as string | undefined,
        presence: frame.presence === true,
      };
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

function publishFrame(text: string, frame: Record<string, unknown>): PublishFrame | { error: string } {
  if (frame.broadcast !== undefined && typeof frame.broadcast !== "boolean")
    return { error: "broadcast must be true or false" };
  if (frame.broadcast !== true && frame.channel === undefined) return { error: "publish needs a channel" };
  if (frame.ref !== undefined && (typeof frame.ref !== "string" || frame.ref.length > MAX_REF_LENGTH))
    return { error: `ref must be a string of at most ${MAX_REF_LENGTH} characters` };
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
      return { error: `duplicate key ${JSON.stringify(scanner.duplicateKey)}` };
    return { error: "frames are JSON text" };
  }
  return {
    type: "publish",
    channel: frame.channel,
    broadcast: frame.broadcast === true,
    dataJson: data ? bytes.toString("utf8", data.start, data.end) : "null",
    ref: frame.ref as string | undefined,
    trace: traceContextOf({ header }),
  };
}
