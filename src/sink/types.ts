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
