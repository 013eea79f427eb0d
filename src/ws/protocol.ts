/** Frames a client may send, after parsing and shape checks. */
export type ClientFrame =
  | { type: "auth"; token: string }
  | { type: "subscribe"; channel: string; since: string | undefined }
  | { type: "unsubscribe"; channel: string }
  | { type: "ping" };

/** Parses one text frame; never throws, returns `{ error }` with a readable reason instead. */
export function parseClientFrame(text: string): ClientFrame | { error: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { error: "frames are JSON text" };
  }
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
      return { error: `unknown frame type ${JSON.stringify(frame.type ?? null)}` };
  }
}
