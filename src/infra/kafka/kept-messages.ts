import type { DeliveredMessage, LogRead, LogReadResult } from "../../ports/fanout-bus.ts";

/** Messages compacted out of the front once this many were let go (and half the array is let go). */
const COMPACT_AFTER = 1024;

/**
 * The channel's messages one read of the log keeps, within its `maxMessages`
 * and `maxBytes`: the first ones (the read stops before the first that does
 * not fit), or with `keepNewest` the newest ones (older ones are let go as
 * newer ones come, so a window is read once, forward, for its newest).
 */
export class KeptMessages {
  private readonly messages: DeliveredMessage[] = [];
  /** With `keepNewest`: messages before this index were let go. */
  private first = 0;
  /** With `keepNewest`: messages let go and compacted out of the array. */
  private compacted = 0;
  private bytes = 0;

  constructor(private readonly request: Pick<LogRead, "maxMessages" | "maxBytes" | "keepNewest">) {}

  /** Keeps `message`; false when the read stops before it (it does not fit, and the first ones are kept). */
  add(message: DeliveredMessage): boolean {
    const { maxMessages, maxBytes, keepNewest } = this.request;
    const count = this.messages.length - this.first;
    const bytes = this.bytes + message.dataJson.length;
    if (!keepNewest && (count >= maxMessages || (count > 0 && bytes > maxBytes))) return false;
    this.messages.push(message);
    this.bytes = bytes;
    if (!keepNewest) return true;
    while (
      this.messages.length - this.first > maxMessages ||
      (this.messages.length - this.first > 1 && this.bytes > maxBytes)
    ) {
      this.bytes -= (this.messages[this.first] as DeliveredMessage).dataJson.length;
      this.first++;
    }
    if (this.first >= COMPACT_AFTER && this.first * 2 >= this.messages.length) {
      this.messages.splice(0, this.first);
      this.compacted += this.first;
      this.first = 0;
    }
    return true;
  }

  /** The read's answer, `next` the first offset not read, `from` where it started, `logStart` the log's first offset. */
  answer(next: bigint, from: bigint, logStart?: bigint): LogReadResult {
    const dropped = this.compacted + this.first > 0;
    const messages = this.first > 0 ? this.messages.slice(this.first) : this.messages;
    const answer: LogReadResult = { gone: false, messages, next, from };
    if (dropped) answer.dropped = true;
    if (logStart !== undefined) answer.logStart = logStart;
    return answer;
  }
}
