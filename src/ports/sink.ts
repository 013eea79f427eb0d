import { GatewayError } from "../domain/errors.ts";
/** One record on its way to Kafka (or to the local log). */
export interface SinkMessage {
  topic: string;
  key: string;
  readonly value: string;
  /**
   * The value's UTF-8 bytes, when they exist already (an ingested record's,
   * see features/ingest/record-value.ts): `valueEnd - valueStart` bytes of
   * `valueBytes` from `valueStart`. Sinks then measure and copy these, and
   * read `value` (decoded from them) only when they need the text.
   */
  readonly valueBytes?: Buffer;
  readonly valueStart?: number;
  readonly valueEnd?: number;
  /** Often one object shared by a run of messages (it is then encoded and measured once per run). */
  headers: Record<string, string>;
  /**
   * The name of a header of this record alone (the fan-out's record id),
   * written after `headers`, which do not have it: `headers` stay shared by
   * the records of a run when one value differs per record. Two fields
   * rather than an object: one object per record on the way to the encoder.
   */
  ownHeader?: string;
  /** The value of `ownHeader`. */
  ownHeaderValue?: string;
}

/** Every header of `message`, its own one last: as they are written (the local log, tests). */
export function headersOf(message: SinkMessage): Record<string, string> {
  const name = message.ownHeader;
  return name === undefined
    ? message.headers
    : { ...message.headers, [name]: message.ownHeaderValue as string };
}

/** A record of a request the sink did not write: its place among the request's messages, and the answer for it. */
export interface RefusedRecord {
  position: number;
  /**
   * `record_too_large` (Kafka's MESSAGE_TOO_LARGE) or `record_refused`
   * (INVALID_RECORD…): refused for good; `unavailable` (503, Retry-After):
   * dropped because Kafka refused the whole topic, to be sent again later.
   */
  error: GatewayError;
}

/**
 * The rejection of an `"acknowledged"` enqueue some of whose records the sink
 * did not write (refused for good, or dropped with their topic), once every
 * record of it is settled: the others were written. As a whole (none
 * written) it answers 503 if one was dropped with its topic (a retry may
 * write them), else as its first refusal does (413 record_too_large, 422
 * record_refused); a caller that answers per record reads `records` instead,
 * so a client resends only those.
 */
export class RecordsRefused extends GatewayError {
  constructor(readonly records: readonly RefusedRecord[]) {
    const whole = (records.find((record) => record.error.code === "unavailable") ??
      records[0]) as RefusedRecord;
    super(whole.error.code, whole.error.message, whole.error.headers, whole.error.details);
    this.name = "RecordsRefused";
  }
}

/** Where features hand records over for durable delivery; the delivery queue implements it. */
export interface RecordQueue {
  /**
   * Resolves once the messages are queued (`"queued"`) or acknowledged by the
   * sink (`"acknowledged"`); rejects with a GatewayError when they are refused
   * (full, unhealthy, draining), and with `RecordsRefused` once all are
   * settled when the sink did not write some of them (refused them for
   * good, or their topic while they waited). The
   * messages are `tenant`'s, and count towards its share of a filling queue:
   * every record is queued on a tenant's behalf (its records, their dead
   * letters, its publishes and fan-out copies), so every call names the one
   * tenant whose records it holds; a call naming none is refused (an Error,
   * not a GatewayError: a bug in the caller), never queued outside the shares.
   * Records of several tenants go in one call per tenant.
   */
  enqueue(messages: SinkMessage[], until: "queued" | "acknowledged", tenant: string): Promise<void>;
  /** Whether `message` can ever fit a batch: a record that cannot is refused on its own, up front. */
  fits(message: SinkMessage): boolean;
  readonly maxRecordBytes: number;
}

/**
 * A durable destination for batches. `write` resolves only once the batch is
 * acknowledged (Kafka acks=all, or fsync for the local log) and rejects on any
 * failure: with an UndeliverableError (the records are at fault), a
 * SinkUnavailableError (the topic is), or any other error (transient: the
 * delivery queue retries).
 */
export interface SinkWriter {
  readonly kind: "kafka" | "local-log";
  /**
   * How many writers each topic has (1 when unset). Each takes one batch at a
   * time, and a record always goes to the same one (`writerOf`), so records
   * that share a key (Kafka: a partition) keep their order.
   */
  readonly writersPerTopic?: number;
  /** Which of its topic's writers takes `message`, from 0 to `writersPerTopic` - 1. */
  writerOf?(message: SinkMessage): number;
  /** A batch holds records of one topic, all for `writer` (0 when unset). */
  write(batch: SinkMessage[], writer?: number): Promise<void>;
  /** Called after a failed write to `topic` by `writer`, before the retry: drop state that may be stale (connections, sequences). */
  reset?(topic: string, writer?: number): void;
  close(): Promise<void>;
}

/** Why the sink refused records for good, as a metric label. */
export type UndeliverableReason = "too_large" | "invalid_record";

/**
 * A writer's rejection when the sink answered but refused the batch for good
 * because of the records themselves (too large, invalid): sending the same
 * bytes again cannot succeed, so the queue splits the batch instead of
 * retrying it.
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

/**
 * A write or probe the sink never answered: the delivery queue's write
 * timeout, or a writer's own timeout with nothing heard back (Kafka: a
 * connection never completed within its connect timeout). The sink has been
 * failing since the write was sent, not since the timeout was seen.
 */
export class SinkNoAnswerError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "SinkNoAnswerError";
  }
}

/**
 * A writer's rejection when the sink cannot take any record of the batch's
 * topic until someone acts: not authorized, topic missing on a cluster that
 * does not create it, a full disk under the local log. Neither splitting nor
 * a quick retry helps; the queue holds that topic's records, answers its
 * requests 503 and tries the topic again now and then, while other topics flow.
 */
export class SinkUnavailableError extends Error {
  constructor(
    /** The sink's own code, e.g. Kafka's TOPIC_AUTHORIZATION_FAILED or the errno ENOSPC. */
    readonly sinkCode: string,
    options?: { cause?: unknown },
  ) {
    super(`the sink cannot take records for this topic: ${sinkCode}`, options);
    this.name = "SinkUnavailableError";
  }
}
