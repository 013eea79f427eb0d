import { GatewayError } from "../../domain/errors.ts";
import { sleep, withDeadline } from "../../lib/time.ts";
import type { Logger } from "../../log/logger.ts";
import type { Metrics } from "../../metrics/metrics.ts";
import type { HealthReasons } from "../../ports/health.ts";
import { type RecordQueue, type SinkMessage, type SinkWriter, UndeliverableError } from "../../ports/sink.ts";
import { deadLetterFor } from "./dead-letter.ts";
import { recordBytes, recordBytesAtMost } from "./record-size.ts";

export interface DeliveryQueueOptions {
  lingerMs: number;
  /** A batch leaves once it holds this many bytes. */
  batchBytes: number;
  /** No batch holds more bytes than this (see `batchBytesLimit`): every batch fits the broker. */
  maxBatchBytes: number;
  maxRecords: number;
  maxBytes: number;
  unhealthyAfterMs: number;
  maxInFlight: number;
  probeIntervalMs: number;
  /** A write (or probe) not acknowledged in this time counts as failed and is retried. */
  writeTimeoutMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  /** Where records the sink refused for good go (KAFKA_DLQ_TOPIC); unset: they are dropped. */
  deadLetterTopic?: string;
}

interface Ticket {
  remaining: number;
  resolve(): void;
  reject(error: Error): void;
}

interface Entry {
  message: SinkMessage;
  bytes: number;
  ticket: Ticket;
}

export const UNHEALTHY_REASON = "kafka_unreachable";

const DRAIN_RETRY_MAX_MS = 500;

/** What the request of a record the sink refused for good is answered: never a 5xx for the client's record. */
function refusalReply(refusal: UndeliverableError): GatewayError {
  switch (refusal.reason) {
    case "too_large":
      return new GatewayError("record_too_large", "Kafka refused a record as too large");
    case "invalid_record":
      return new GatewayError("record_refused", `Kafka refused a record as invalid (${refusal.sinkCode})`);
    case "not_authorized":
      return new GatewayError("unavailable", "Kafka refused the write: not authorized", {
        "retry-after": "30",
      });
  }
}

/**
 * The bounded queue between requests and the sink. Records accumulate and
 * leave in batches (on linger time, on batch bytes, or as soon as the previous
 * batch is acknowledged) and every batch fits the broker (`maxBatchBytes`);
 * a failed batch is retried with backoff until it succeeds, so an
 * acknowledged request is never lost. A batch the sink refuses for good is
 * split down to the record at fault (see `send`). Past its bounds, or while
 * the sink has been unreachable for `unhealthyAfterMs`, it refuses new records
 * with a 503 instead of growing memory.
 */
export class DeliveryQueue implements RecordQueue {
  private pending: Entry[] = [];
  private pendingHead = 0;
  private pendingBytes = 0;
  /** Records and bytes accepted and not yet acknowledged (pending + in flight). */
  private queuedRecords = 0;
  private queuedBytes = 0;
  private inFlight = 0;
  /** Batches in flight that failed at least once and are being retried. */
  private retrying = 0;
  /** The pump waiting for the linger time to pass, if one is. */
  private scheduledPump: { cancel(): void } | undefined;
  private monitorTimer: ReturnType<typeof setInterval> | undefined;
  private lastProbeAt = 0;
  private failingSince: number | undefined;
  private closed = false;
  /** Set when the drain deadline passed: batches still failing stop retrying. */
  private abandoned = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly writer: SinkWriter,
    private readonly options: DeliveryQueueOptions,
    private readonly metrics: Metrics,
    private readonly health: HealthReasons,
    private readonly log: Logger,
  ) {
    metrics.queueCapacityRecords.set(options.maxRecords);
    metrics.queueCapacityBytes.set(options.maxBytes);
    metrics.kafkaUp.set(1);
  }

  /**
   * Starts the monitor: it turns /health unhealthy once failures have lasted
   * `unhealthyAfterMs` (even between retries), and, when `probe` is given,
   * checks an idle sink so an outage is noticed without traffic.
   */
  startMonitor(probe?: () => Promise<void>): void {
    this.monitorTimer = setInterval(() => {
      if (this.closed) return;
      this.checkHealth();
      if (!probe || this.inFlight > 0 || Date.now() - this.lastProbeAt < this.options.probeIntervalMs) return;
      this.lastProbeAt = Date.now();
      withDeadline(probe(), this.options.writeTimeoutMs, () => this.writeTimeout()).then(
        () => this.markHealthy(),
        (error) => this.markFailing(error),
      );
    }, 250);
    this.monitorTimer.unref?.();
  }

  /** Records a failure seen outside a write (Kafka unreachable at start): the unhealthy clock starts now. */
  noteFailure(error: unknown): void {
    this.markFailing(error);
  }

  /**
   * Queues the messages of one request. The promise resolves once they are
   * accepted (`"queued"`) or once the sink acknowledged all of them
   * (`"acknowledged"`). It rejects with a GatewayError when they are refused:
   * 503 (draining, sink unreachable, queue full) or 413 (a record that can
   * never fit); with `"acknowledged"` also when the sink refuses one of them
   * for good (see `setAside`). It never throws.
   */
  enqueue(messages: SinkMessage[], until: "queued" | "acknowledged"): Promise<void> {
    const sizes = messages.map(recordBytes);
    let bytes = 0;
    let largest = 0;
    for (const size of sizes) {
      bytes += size;
      if (size > largest) largest = size;
    }
    const refusal = this.refusal(messages.length, bytes, largest);
    if (refusal) return Promise.reject(refusal);
    let ticket!: Ticket;
    let settled: Promise<void>;
    if (until === "acknowledged") {
      settled = new Promise<void>((resolve, reject) => {
        ticket = { remaining: messages.length, resolve, reject };
      });
    } else {
      // Nobody waits for the acknowledgement: the queue still retries until delivered.
      ticket = { remaining: messages.length, resolve: () => {}, reject: () => {} };
      settled = Promise.resolve();
    }
    messages.forEach((message, index) => {
      this.pending.push({ message, bytes: sizes[index] as number, ticket });
    });
    this.pendingBytes += bytes;
    this.queuedRecords += messages.length;
    this.queuedBytes += bytes;
    this.updateGauges();
    if (this.pendingBytes >= this.options.batchBytes) this.pump();
    else this.schedulePump();
    return settled;
  }

  /** The largest record (in `recordBytes`) a batch can hold; a larger one can never be delivered. */
  get maxRecordBytes(): number {
    return this.options.maxBatchBytes;
  }

  /** Whether `message` fits in a batch at all, for refusing it before it is accepted. */
  fits(message: SinkMessage): boolean {
    const max = this.options.maxBatchBytes;
    // Most records are far below the limit: the loose bound settles them without reading the strings.
    return recordBytesAtMost(message) <= max || recordBytes(message) <= max;
  }

  /** Why `records` more records of `bytes` in all cannot be queued now, if they cannot. */
  private refusal(records: number, bytes: number, largest: number): GatewayError | undefined {
    if (largest > this.options.maxBatchBytes)
      return new GatewayError(
        "record_too_large",
        `a record takes ${largest} bytes in Kafka; at most ${this.options.maxBatchBytes} fit`,
      );
    if (this.closed)
      return new GatewayError("draining", "the gateway is shutting down", { "retry-after": "1" });
    if (this.isUnhealthy()) {
      this.metrics.overloaded.inc();
      return new GatewayError("unavailable", "Kafka is unreachable", { "retry-after": "5" });
    }
    if (
      this.queuedRecords + records > this.options.maxRecords ||
      this.queuedBytes + bytes > this.options.maxBytes
    ) {
      this.metrics.overloaded.inc();
      return new GatewayError("overloaded", "the producer queue is full", { "retry-after": "1" });
    }
    return undefined;
  }

  get depth(): { records: number; bytes: number } {
    return { records: this.queuedRecords, bytes: this.queuedBytes };
  }

  /**
   * Refuses new records, flushes what is queued (retrying a failing sink, more
   * often than usual, until `timeoutMs` runs out) and closes the writer.
   * Rejects, saying how many, when records were left undelivered.
   */
  async close(timeoutMs: number): Promise<void> {
    this.closed = true;
    if (this.monitorTimer) clearInterval(this.monitorTimer);
    this.pump();
    const flushed = await withDeadline(this.whenEmpty(), timeoutMs, () => new Error("flush timed out")).then(
      () => true,
      () => false,
    );
    const undelivered = this.queuedRecords;
    // Retrying past the deadline would only reopen connections while the process exits.
    if (!flushed) this.abandoned = true;
    await this.writer.close().catch((error) => this.log.warn({ err: error }, "sink close failed"));
    if (!flushed) {
      this.log.error({ records: undelivered }, "drain deadline passed with records undelivered");
      throw new Error(`${undelivered} records undelivered at the drain deadline`);
    }
  }

  private whenEmpty(): Promise<void> {
    if (this.queuedRecords === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * With no linger time the pump runs once the records of this turn's reads
   * are queued (setImmediate); a 0 ms timer would wait 1 ms or more.
   */
  private schedulePump(): void {
    if (this.scheduledPump) return;
    if (this.options.lingerMs === 0) {
      const immediate = setImmediate(() => this.pump());
      this.scheduledPump = { cancel: () => clearImmediate(immediate) };
    } else {
      const timer = setTimeout(() => this.pump(), this.options.lingerMs);
      this.scheduledPump = { cancel: () => clearTimeout(timer) };
    }
  }

  private pump(): void {
    this.scheduledPump?.cancel();
    this.scheduledPump = undefined;
    // While a batch is being retried, hold the others back instead of hammering a failing broker.
    // An outage seen only by the probe does not hold them: with nothing in flight, nobody else would send.
    while (this.inFlight < this.options.maxInFlight && this.hasPending() && this.retrying === 0) {
      this.inFlight++;
      void this.deliver(this.takeBatch());
    }
  }

  private hasPending(): boolean {
    return this.pendingHead < this.pending.length;
  }

  private takeBatch(): Entry[] {
    const batch: Entry[] = [];
    let bytes = 0;
    while (this.hasPending() && (batch.length === 0 || bytes < this.options.batchBytes)) {
      const entry = this.pending[this.pendingHead] as Entry;
      if (batch.length > 0 && bytes + entry.bytes > this.options.maxBatchBytes) break;
      this.pendingHead++;
      bytes += entry.bytes;
      batch.push(entry);
    }
    this.pendingBytes -= bytes;
    if (this.pendingHead === this.pending.length) {
      this.pending = [];
      this.pendingHead = 0;
    } else if (this.pendingHead > 4096 && this.pendingHead * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.pendingHead);
      this.pendingHead = 0;
    }
    return batch;
  }

  private async deliver(batch: Entry[]): Promise<void> {
    await this.send(batch);
    this.inFlight--;
    this.pump();
  }

  /**
   * Sends `batch` until the sink acknowledges it. A batch the sink refuses for
   * good is split in halves, each sent on its own, down to the record at
   * fault, which is set aside: one bad record never stalls the queue.
   */
  private async send(batch: Entry[]): Promise<void> {
    const outcome = await this.writeUntilAnswered(batch);
    if (outcome === "abandoned") return;
    if (outcome === "acknowledged") {
      this.settle(batch);
      return;
    }
    if (batch.length > 1) {
      const half = Math.ceil(batch.length / 2);
      await this.send(batch.slice(0, half));
      await this.send(batch.slice(half));
      return;
    }
    this.setAside(batch[0] as Entry, outcome);
  }

  /** Writes until acknowledged or refused for good, retrying other failures with backoff. */
  private async writeUntilAnswered(
    batch: Entry[],
  ): Promise<"acknowledged" | "abandoned" | UndeliverableError> {
    const messages = batch.map((entry) => entry.message);
    let failed = false;
    try {
      for (let attempt = 0; ; attempt++) {
        const started = performance.now();
        try {
          await withDeadline(this.writer.write(messages), this.options.writeTimeoutMs, () =>
            this.writeTimeout(),
          );
          this.metrics.produceDuration.observe((performance.now() - started) / 1000);
          this.markHealthy();
          return "acknowledged";
        } catch (error) {
          this.metrics.produceErrors.inc();
          // A refusal is still an answer: the sink is reachable, the records are the problem.
          if (error instanceof UndeliverableError) {
            this.writer.reset?.();
            this.markHealthy();
            return error;
          }
          if (!failed) this.retrying++;
          failed = true;
          this.markFailing(error);
          if (this.abandoned) return "abandoned";
          this.writer.reset?.();
          await sleep(this.backoff(attempt));
          if (this.abandoned) return "abandoned";
        }
      }
    } finally {
      if (failed) this.retrying--;
    }
  }

  /** A record the sink refused for good: dead-lettered if a topic is set (and it is not a dead letter), else dropped. */
  private setAside(entry: Entry, refusal: UndeliverableError): void {
    const { message } = entry;
    const deadLetters = this.options.deadLetterTopic;
    const deadLettered =
      deadLetters !== undefined &&
      message.topic !== deadLetters &&
      this.requeue(
        deadLetterFor(
          message,
          deadLetters,
          `refused by Kafka: ${refusal.sinkCode}`,
          this.options.maxBatchBytes,
        ),
      );
    this.metrics.eventsUndeliverable.inc({ reason: refusal.reason });
    this.log.warn(
      {
        reason: refusal.reason,
        code: refusal.sinkCode,
        topic: message.topic,
        bytes: entry.bytes,
        deadLettered,
      },
      deadLettered ? "record refused by the sink: dead-lettered" : "record refused by the sink: dropped",
    );
    entry.ticket.reject(refusalReply(refusal));
    this.release([entry]);
  }

  /** Queues a message of the queue's own (a dead letter) within the bounds; false when it does not fit. */
  private requeue(message: SinkMessage): boolean {
    const bytes = recordBytes(message);
    if (
      bytes > this.options.maxBatchBytes ||
      this.queuedRecords + 1 > this.options.maxRecords ||
      this.queuedBytes + bytes > this.options.maxBytes
    )
      return false;
    this.pending.push({ message, bytes, ticket: { remaining: 1, resolve: () => {}, reject: () => {} } });
    this.pendingBytes += bytes;
    this.queuedRecords++;
    this.queuedBytes += bytes;
    this.updateGauges();
    return true;
  }

  private settle(batch: Entry[]): void {
    for (const entry of batch) {
      entry.ticket.remaining--;
      if (entry.ticket.remaining === 0) entry.ticket.resolve();
    }
    this.metrics.eventsProduced.inc(batch.length);
    this.metrics.produceBatchRecords.observe(batch.length);
    this.release(batch);
  }

  /** Forgets entries that left the queue, delivered or set aside. */
  private release(entries: Entry[]): void {
    let bytes = 0;
    for (const entry of entries) bytes += entry.bytes;
    this.queuedRecords -= entries.length;
    this.queuedBytes -= bytes;
    this.updateGauges();
    if (this.queuedRecords === 0) for (const wake of this.idleWaiters.splice(0)) wake();
  }

  private writeTimeout(): Error {
    return new Error(`no acknowledgement within ${this.options.writeTimeoutMs} ms`);
  }

  private backoff(attempt: number): number {
    // While draining, every moment the sink is back counts: retry often.
    const maxMs = this.closed
      ? Math.min(this.options.retryMaxMs, DRAIN_RETRY_MAX_MS)
      : this.options.retryMaxMs;
    const ceiling = Math.min(maxMs, this.options.retryBaseMs * 2 ** Math.min(attempt, 16));
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  private isUnhealthy(): boolean {
    return this.failingSince !== undefined && Date.now() - this.failingSince >= this.options.unhealthyAfterMs;
  }

  private markFailing(error: unknown): void {
    if (this.failingSince === undefined) {
      this.failingSince = Date.now();
      this.log.warn({ err: error, sink: this.writer.kind }, "sink write failed; retrying");
    }
    this.checkHealth();
  }

  private checkHealth(): void {
    if (this.failingSince === undefined || !this.isUnhealthy() || this.health.has(UNHEALTHY_REASON)) return;
    this.health.set(UNHEALTHY_REASON, true);
    this.metrics.kafkaUp.set(0);
    this.log.error(
      { sink: this.writer.kind, failingForMs: Date.now() - this.failingSince },
      "sink unreachable",
    );
  }

  private markHealthy(): void {
    if (this.failingSince === undefined) return;
    this.failingSince = undefined;
    this.health.set(UNHEALTHY_REASON, false);
    this.metrics.kafkaUp.set(1);
    this.log.info({ sink: this.writer.kind }, "sink reachable again");
    this.pump();
  }

  private updateGauges(): void {
    this.metrics.queueRecords.set(this.queuedRecords);
    this.metrics.queueBytes.set(this.queuedBytes);
  }
}
