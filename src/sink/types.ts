/** One record on its way to Kafka (or to the local log). */
export interface SinkMessage {
  topic: string;
  key: string;
  value: string;
  headers: Record<string, string>;
}

/**
 * A durable destination for batches. `write` resolves only once the batch is
 * acknowledged (Kafka acks=all, or fsync for the local log) and rejects on any
 * failure; the delivery queue retries.
 */
export interface SinkWriter {
  readonly kind: "kafka" | "local-log";
  write(batch: SinkMessage[]): Promise<void>;
  /** Called after a failed write, before the retry: drop state that may be stale (connections, sequences). */
  reset?(): void;
  close(): Promise<void>;
}

/** Why the sink refused records for good, as a metric label. */
export type UndeliverableReason = "too_large" | "invalid_record" | "not_authorized";

/**
 * A writer's rejection when the sink answered but refused the batch for good
 * (too large, invalid, not authorized): sending the same bytes again cannot
 * succeed, so the queue splits the batch instead of retrying it.
 */
export class UndeliverableError extends Error {
  constructor(
    readonly reason: UndeliverableReason,
    /** The sink's own code, e.g. Kafka's MESSAGE_TOO_LARGE. */
    readonly sinkCode: string,
    options?: { cause?: unknown },
  ) {
    super(`the sink refused the records: ${sinkCode}`, options);
    this.name = "UndeliverableError";
  }
}
