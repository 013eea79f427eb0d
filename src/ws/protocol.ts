import { DEPTH_ERROR, jsonProblem, SYNTAX_ERROR } from "../json/scan.ts";

/** Frames a client may send, after parsing and shape checks. */
export type ClientFrame =
  | { type: "auth"; token: string }
  | { type: "subscribe"; channel: string; since: string | undefined }
  | { type: "unsubscribe"; channel: string }
  | { type: "ping" };

/** Client frames are flat objects; anything nested deeper is refused before it is parsed. */
const MAX_DEPTH = 8;
/** Longest frame type echoed back in an error. */
const MAX_ECHOED_TYPE = 32;

/** Parses one text frame; never throws, returns `{ error }` with a readable reason instead. */
export function parseClientFrame(text: string): ClientFrame | { error: string } {
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
      if (frame.since !== undefined && typeof frame.since !== "string")
        return { error: "since must be an event id" };
      return { type: "subscribe", channel: frame.channel, since: frame.since as string | undefined };
    case "unsubscribe":
      return typeof frame.channel === "string"
        ? { type: "unsubscribe", channel: frame.channel }
        : { error: "unsubscribe needs a channel" };
    case "ping":
      return { type: "ping" };
    default:
      // Only a short string is echoed: the reply never costs more than the frame's shape.
      return typeof frame.type === "string" && frame.type.length <= MAX_ECHOED_TYPE
        ? { error: `unknown frame type ${JSON.stringify(frame.type)}` }
        : { error: "unknown frame type" };
  }
}
