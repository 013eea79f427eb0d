import { TOPIC_QUEUE_SHARE } from "../../config/config.ts";
import { GatewayError } from "../../domain/errors.ts";
import { sleep, withDeadline } from "../../lib/time.ts";
import type { Logger } from "../../log/logger.ts";
import { OccasionalLine } from "../../log/occasional-line.ts";
import type { Metrics } from "../../metrics/metrics.ts";
import type { HealthReasons } from "../../ports/health.ts";
import {
  type RecordQueue,
  RecordsRefused,
  type RefusedRecord,
  type SinkMessage,
  SinkNoAnswerError,
  SinkUnavailableError,
  type SinkWriter,
  UndeliverableError,
} from "../../ports/sink.ts";
import { deadLetterFor } from "./dead-letter.ts";
import { recordBytes, recordBytesAtMost } from "./record-size.ts";
import { type TenantHolding, TenantShares } from "./tenant-shares.ts";

export interface DeliveryQueueOptions {
  lingerMs: number;
  /** A batch leaves once it holds this many bytes. */
  batchBytes: number;
  /** No batch holds more bytes than this (see `batchBytesLimit`): every batch fits the broker. */
  maxBatchBytes: number;
  maxRecords: number;
  maxBytes: number;
  unhealthyAfterMs: number;
  /** Batches in flight per writer of a topic (see `SinkWriter.writersPerTopic`). */
  maxInFlight: number;
  probeIntervalMs: number;
  /** A write (or probe) not acknowledged in this time counts as failed and is retried. */
  writeTimeoutMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  /** How long a topic the sink refused as a whole (SinkUnavailableError) is held before it is tried again. */
  unavailableRetryMs: number;
  /** Where records the sink refused for good go (KAFKA_DLQ_TOPIC); unset: they are dropped. */
  deadLetterTopic?: string;
  /**
   * The ingest topic (KAFKA_TOPIC): only its records count in gateway_events_produced_total, the
   * records gateway_events_accepted_total counts, written. The fan-out topic's copies and publishes
   * and the dead letters share the queue but are not ingested events. Unset: every record counts.
   */
  eventsTopic?: string;
  /**
   * Told the topic of a record the sink refused as too large (a limit lowered
   * while running), so that its owner can learn the limit again and lower the
   * batches with `capBatchBytes`.
   */
  onTooLarge?: (topic: string) => void;
}

interface Ticket {
  remaining: number;
  /** Its records the sink refused for good so far, by position in the request (none: undefined). */
  refused?: RefusedRecord[];
  /** Whether a request waits for the acknowledgement ("acknowledged"); else it was answered when queued. */
  waits: boolean;
  resolve(): void;
  reject(error: Error): void;
  /** What the request's tenant holds in the queue (a dead letter of the queue's own: its record's tenant's). */
  holding: TenantHolding;
}

interface Entry {
  message: SinkMessage;
  bytes: number;
  ticket: Ticket;
  /** Its place among the messages of its `enqueue`. */
  position: number;
}

export const UNHEALTHY_REASON = "kafka_unreachable";
/**
 * /health 503 reason of a new instance whose sink has not answered yet (see
 * `DeliveryQueue.awaitFirstContact`): the grace of `unhealthyAfterMs` is for an
 * outage of an instance that was serving, not for one that never reached Kafka.
 */
export const CONNECTING_REASON = "kafka_connecting";
/** /health 503 reason while the embedded log cannot be written (full disk, size limit): this instance's own trouble. */
export const LOCAL_LOG_UNWRITABLE_REASON = "local_log_unwritable";
/** /health stays 200 and lists this (plus the topic) while Kafka refuses a topic: every instance shares that fault. */
export const TOPIC_UNAVAILABLE_PREFIX = "kafka_topic_unavailable:";

const DRAIN_RETRY_MAX_MS = 500;
/** Dead letters are diagnostics: they get a small share and are dropped first. */
const DEAD_LETTER_SHARE = 1 / 16;
/** At most one log line per this interval about dropped dead letters, with the count. */
/** Lines that can come once per record (refusals, dead letters dropped) are logged at most this often. */
const LOG_INTERVAL_MS = 10_000;

/** The refusal of an `enqueue` naming no tenant: every record counts in its tenant's share. */
export const NO_TENANT = "records are queued in a tenant's name: enqueue needs the tenant";

const noTicket = (holding: TenantHolding): Ticket => ({
  remaining: 1,
  waits: false,
  resolve: () => {},
  reject: () => {},
  holding,
});

/** What the request of a record the sink refused for good is answered: never a 5xx for the client's record. */
function refusalReply(refusal: UndeliverableError): GatewayError {
  return refusal.reason === "too_large"
    ? new GatewayError("record_too_large", "Kafka refused a record as too large")
    : new GatewayError("record_refused", `Kafka refused a record as invalid (${refusal.sinkCode})`);
}

/**
 * The records of one topic bound for one of its writers (a Kafka producer
 * owning some of the partitions), in the order they came. Each sends its own
 * batches and retries its own failures, so records of one writer keep their
 * order while the topic's writers work side by side.
 */
class WriterQueue {
  pending: Entry[] = [];
  pendingHead = 0;
  pendingBytes = 0;
  inFlight = 0;
  /** A batch failed with a transient error and is being retried: this writer sends nothing else meanwhile. */
  retrying = false;

  constructor(readonly writer: number) {}

  hasPending(): boolean {
    return this.pendingHead < this.pending.length;
  }

  push(entry: Entry): void {
    this.pending.push(entry);
    this.pendingBytes += entry.bytes;
  }

  take(batchBytes: number, maxBatchBytes: number): Entry[] {
    const batch: Entry[] = [];
    let bytes = 0;
    while (this.hasPending() && (batch.length === 0 || bytes < batchBytes)) {
      const entry = this.pending[this.pendingHead] as Entry;
      if (batch.length > 0 && bytes + entry.bytes > maxBatchBytes) break;
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

  /** Puts a batch that was not delivered back in front, in order. */
  requeueFront(batch: Entry[]): void {
    this.pending = batch.concat(this.pending.slice(this.pendingHead));
    this.pendingHead = 0;
    this.pendingBytes = this.pending.reduce((sum, entry) => sum + entry.bytes, 0);
  }

  /** Keeps only the pending entries `keep` accepts. */
  retain(keep: (entry: Entry) => boolean): void {
    this.pending = this.pending.slice(this.pendingHead).filter(keep);
    this.pendingHead = 0;
    this.pendingBytes = this.pending.reduce((sum, entry) => sum + entry.bytes, 0);
  }
}

/**
 * One topic's records. Batches hold records of one topic, and a topic's
 * trouble (retries, a refusal of the whole topic) holds only its own lane.
 * There is one lane per topic the gateway writes (ingest, fan-out, dead
 * letters: all from config), so the lanes are few and live as long as the
 * queue; each has a fixed number of writer queues (`SinkWriter.writersPerTopic`).
 */
class Lane {
  readonly queues: WriterQueue[];
  /** Records and bytes of this topic accepted and not yet acknowledged (pending + in flight). */
  records = 0;
  bytes = 0;
  /** Since when this topic's writes fail with transient errors; cleared by an answer. */
  failingSince: number | undefined;
  /** When the sink last answered a write of this topic (0: never): its failures count from no earlier. */
  lastAnswerAt = 0;
  /** Set while the sink refuses the whole topic: its code, and until when the lane is held. */
  unavailable: { code: string; until: number } | undefined;
  /** Wakes the lane when its hold ends. */
  retryTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly topic: string,
    readonly deadLetters: boolean,
    writers: number,
  ) {
    this.queues = Array.from({ length: writers }, (_, writer) => new WriterQueue(writer));
  }

  /** Whether one of the topic's writers is retrying a batch. */
  isRetrying(): boolean {
    return this.queues.some((queue) => queue.retrying);
  }

  /** Keeps only the pending entries `keep` accepts, in every writer queue. */
  retain(keep: (entry: Entry) => boolean): void {
    for (const queue of this.queues) queue.retain(keep);
  }
}

/**
 * The bounded queue between requests and the sink. Records accumulate per
 * topic and, within it, per writer (a Kafka producer owning some of the
 * topic's partitions), and leave in batches (on linger time, on batch bytes,
 * or as soon as that writer's previous batch is acknowledged); every batch
 * fits the broker (`maxBatchBytes`). Each failure is classified by the writer:
 *
 * - transient (network, leader changes, timeouts): the batch is retried with
 *   bounded backoff until it succeeds, so an acknowledged request is never
 *   lost; only its own writer waits meanwhile (its later records keep their
 *   order behind it). Once failures have lasted
 *   `unhealthyAfterMs`, new records for that topic get a 503 (and, when the
 *   sink as a whole is failing, /health says `kafka_unreachable`);
 * - refused for good because of the records (UndeliverableError): the batch
 *   is split down to the record at fault, which is dead-lettered or dropped;
 * - refused for the whole topic (SinkUnavailableError: not authorized,
 *   missing topic, full disk): the topic is held for `unavailableRetryMs` and
 *   then tried again. Records of requests waiting for it are dropped: a
 *   request none of whose records was written gets a 503 (the client
 *   retries), one some of whose records were written gets the dropped ones
 *   named (`RecordsRefused`, a 503 each); records already answered 202 stay
 *   queued until the topic comes back, and new records for it get a 503.
 *
 * Dead letters travel in a lane of their own with a small share of the
 * bounds: when they cannot be written they are dropped, counted and logged,
 * never holding data. Past its bounds the queue refuses new records with a
 * 503 instead of growing memory.
 */
export class DeliveryQueue implements RecordQueue {
  private readonly lanes = new Map<string, Lane>();
  /** Records and bytes accepted and not yet acknowledged, every lane together. */
  private queuedRecords = 0;
  private queuedBytes = 0;
  /** The pump waiting for the linger time to pass, if one is. */
  private scheduledPump: { cancel(): void } | undefined;
  private monitorTimer: ReturnType<typeof setInterval> | undefined;
  private lastProbeAt = 0;
  private probing = false;
  /**
   * Since when the sink fails with transient errors and nothing it answered since (any topic, or the
   * probe): from when the first write or probe that failed was sent, not when its failure was seen (a
   * frozen broker is seen only at the write timeout), and no earlier than the sink's last answer.
   */
  private failingSince: number | undefined;
  /** When the sink last answered anything (0: never). */
  private lastAnswerAt = 0;
  /** Set by `awaitFirstContact` until the sink answers for the first time. */
  private connecting = false;
  private closed = false;
  /** Set when the drain deadline passed: batches still failing stop retrying. */
  private abandoned = false;
  private idleWaiters: Array<() => void> = [];
  /** `options.maxBatchBytes`, or a topic's own smaller limit learnt since (`capBatchBytes`). */
  private maxBatchBytes: number;
  private readonly deadLettersDroppedLine = new OccasionalLine(LOG_INTERVAL_MS);
  private readonly refusedRecordsLine = new OccasionalLine(LOG_INTERVAL_MS);
  private readonly tenantShareLine = new OccasionalLine(LOG_INTERVAL_MS);
  private readonly shares: TenantShares;

  constructor(
    private readonly writer: SinkWriter,
    private readonly options: DeliveryQueueOptions,
    private readonly metrics: Metrics,
    private readonly health: HealthReasons,
    private readonly log: Logger,
  ) {
    this.maxBatchBytes = options.maxBatchBytes;
    this.shares = new TenantShares(options.maxRecords, options.maxBytes);
    metrics.queueCapacityRecords.set(options.maxRecords);
    metrics.queueCapacityBytes.set(options.maxBytes);
    metrics.kafkaUp.set(1);
    metrics.queueRecords.sampleFrom(() => this.queuedRecords);
    metrics.queueBytes.sampleFrom(() => this.queuedBytes);
  }

  /**
   * Starts the monitor: it turns /health unhealthy once failures have lasted
   * `unhealthyAfterMs` (even between retries), and, when `probe` is given,
   * checks the sink every `probeIntervalMs` so an outage (and its end) is
   * noticed without traffic.
   */
  startMonitor(probe?: () => Promise<void>): void {
    this.monitorTimer = setInterval(() => {
      if (this.closed) return;
      this.checkHealth();
      if (!probe || this.probing || Date.now() - this.lastProbeAt < this.options.probeIntervalMs) return;
      const sentAt = Date.now();
      this.lastProbeAt = sentAt;
      this.probing = true;
      withDeadline(probe(), this.options.writeTimeoutMs, () => this.writeTimeout())
        .then(
          () => this.markReachable(),
          (error) => this.markFailing(undefined, error, sentAt),
        )
        .finally(() => {
          this.probing = false;
        });
    }, 250);
    this.monitorTimer.unref?.();
  }

  /**
   * A new instance is not ready before its sink has answered once: /health
   * says `kafka_connecting` (503 unless KAFKA_AFFECTS_HEALTH=false) until a
   * write, a refusal or the probe is answered. Once failures have lasted
   * `unhealthyAfterMs` the reason becomes `kafka_unreachable`, as for any outage.
   */
  awaitFirstContact(): void {
    this.connecting = true;
    this.health.set(CONNECTING_REASON, true);
    this.metrics.kafkaUp.set(0);
  }

  /** Records a failure seen outside a write (Kafka unreachable at start): the unhealthy clock starts now. */
  noteFailure(error: unknown): void {
    this.markFailing(undefined, error, Date.now());
  }

  /** Records an answer seen outside a write (Kafka reached at start). */
  noteReachable(): void {
    this.markReachable();
  }

  /**
   * Queues the messages of one request. The promise resolves once they are
   * accepted (`"queued"`) or once the sink acknowledged all of them
   * (`"acknowledged"`). It rejects with a GatewayError when they are refused:
   * 503 (draining, sink unreachable, topic unavailable, queue full) or 413 (a
   * record that can never fit); with `"acknowledged"`, once every record is
   * settled, with `RecordsRefused` naming those it did not write (refused
   * for good, or dropped when it refused their topic). It never throws.
   * The records are `tenant`'s and count towards its share (see
   * TenantShares): past half full, a tenant over its share gets the 503.
   * A call naming no tenant is a bug in the caller: it is refused with an
   * Error (a 500), never queued outside every share.
   */
  enqueue(messages: SinkMessage[], until: "queued" | "acknowledged", tenant: string): Promise<void> {
    if (typeof tenant !== "string" || tenant === "") return Promise.reject(new Error(NO_TENANT));
    const sizes: number[] = new Array(messages.length);
    const lanes: Lane[] = new Array(messages.length);
    let largest = 0;
    // Per topic: a request's records nearly always share one, so its lane is looked up once per run.
    // Plain loops: no closure over this request's state per request.
    const demand = new Map<Lane, { records: number; bytes: number }>();
    let lane: Lane | undefined;
    let need = { records: 0, bytes: 0 };
    for (let index = 0; index < messages.length; index++) {
      const message = messages[index] as SinkMessage;
      const size = recordBytes(message);
      sizes[index] = size;
      if (size > largest) largest = size;
      if (lane?.topic !== message.topic) {
        lane = this.lane(message.topic);
        const known = demand.get(lane);
        if (known) need = known;
        else {
          need = { records: 0, bytes: 0 };
          demand.set(lane, need);
        }
      }
      lanes[index] = lane;
      need.records++;
      need.bytes += size;
    }
    const holding = this.shares.asking(tenant, Date.now());
    const refusal = this.refusal(demand, largest, holding);
    if (refusal) return Promise.reject(refusal);
    let ticket!: Ticket;
    let settled: Promise<void>;
    if (until === "acknowledged") {
      settled = new Promise<void>((resolve, reject) => {
        ticket = { remaining: messages.length, waits: true, resolve, reject, holding };
      });
    } else {
      // Nobody waits for the acknowledgement: the queue still retries until delivered.
      ticket = { ...noTicket(holding), remaining: messages.length };
      settled = Promise.resolve();
    }
    let readyToSend = false;
    for (let index = 0; index < messages.length; index++) {
      const message = messages[index] as SinkMessage;
      const queue = this.writerQueue(lanes[index] as Lane, message);
      queue.push({ message, bytes: sizes[index] as number, ticket, position: index });
      if (queue.pendingBytes >= this.options.batchBytes) readyToSend = true;
    }
    for (const [demanded, { records, bytes }] of demand) {
      this.count(demanded, records, bytes);
      this.shares.add(holding, records, bytes);
    }
    if (readyToSend) this.pump();
    else this.schedulePump();
    return settled;
  }

  /**
   * Lowers the largest batch to `bytes` (never raises it): a topic whose own
   * `max.message.bytes` is below KAFKA_MAX_MESSAGE_BYTES would refuse, one by
   * one, records accepted for it, each after splitting the batch that held it.
   */
  capBatchBytes(bytes: number): void {
    this.maxBatchBytes = Math.min(this.maxBatchBytes, bytes);
  }

  /** The largest record (in `recordBytes`) a batch can hold; a larger one can never be delivered. */
  get maxRecordBytes(): number {
    return this.maxBatchBytes;
  }

  /** Whether `message` fits in a batch at all, for refusing it before it is accepted. */
  fits(message: SinkMessage): boolean {
    const max = this.maxBatchBytes;
    // Most records are far below the limit: the loose bound settles them without reading the strings.
    return recordBytesAtMost(message) <= max || recordBytes(message) <= max;
  }

  get depth(): { records: number; bytes: number } {
    return { records: this.queuedRecords, bytes: this.queuedBytes };
  }

  /** The data records (and their bytes) accepted and not yet acknowledged: what an exit now would lose. */
  get undelivered(): { records: number; bytes: number } {
    const deadLetters = this.deadLetterLane();
    return {
      records: this.queuedRecords - (deadLetters?.records ?? 0),
      bytes: this.queuedBytes - (deadLetters?.bytes ?? 0),
    };
  }

  /**
   * Refuses new records, flushes what is queued (retrying a failing sink, more
   * often than usual, until `timeoutMs` runs out) and closes the writer.
   * Rejects, saying how many, when records were left undelivered; dead letters
   * left over are dropped and counted, never a failure.
   */
  async close(timeoutMs: number): Promise<void> {
    this.closed = true;
    if (this.monitorTimer) clearInterval(this.monitorTimer);
    // Every moment counts now: held topics are tried again at once.
    for (const lane of this.lanes.values()) {
      if (lane.unavailable) lane.unavailable.until = Date.now();
      if (lane.retryTimer) clearTimeout(lane.retryTimer);
      lane.retryTimer = undefined;
    }
    this.pump();
    const flushed = await withDeadline(this.whenIdle(), timeoutMs, () => new Error("flush timed out")).then(
      () => true,
      () => false,
    );
    const deadLetters = this.deadLetterLane()?.records ?? 0;
    const undelivered = this.undelivered;
    // Retrying past the deadline (or dead letters past the data) would only reopen connections while the process exits.
    this.abandoned = true;
    for (const lane of this.lanes.values()) if (lane.retryTimer) clearTimeout(lane.retryTimer);
    if (deadLetters > 0) this.dropDeadLetters("undelivered_at_exit", deadLetters);
    await this.writer.close().catch((error) => this.log.warn({ err: error }, "sink close failed"));
    if (!flushed && undelivered.records > 0) {
      // The same fields as the lifecycle's line when a second signal or the hard deadline ends the drain.
      this.log.error(
        { lost: undelivered.records, lostBytes: undelivered.bytes },
        "drain deadline passed with records undelivered",
      );
      throw new Error(`${undelivered.records} records undelivered at the drain deadline`);
    }
  }

  private lane(topic: string): Lane {
    let lane = this.lanes.get(topic);
    if (!lane) {
      lane = new Lane(topic, topic === this.options.deadLetterTopic, this.writer.writersPerTopic ?? 1);
      this.lanes.set(topic, lane);
      this.metrics.topicAvailable.set({ topic }, 1);
    }
    return lane;
  }

  /** The queue of the topic's writer that takes `message`: the same one for every record of its key. */
  private writerQueue(lane: Lane, message: SinkMessage): WriterQueue {
    return lane.queues[this.writer.writerOf ? this.writer.writerOf(message) : 0] as WriterQueue;
  }

  private deadLetterLane(): Lane | undefined {
    const topic = this.options.deadLetterTopic;
    return topic === undefined ? undefined : this.lanes.get(topic);
  }

  /** Why these records cannot be queued now, if they cannot; a dead letter refused is counted as dropped. */
  private refusal(
    demand: Map<Lane, { records: number; bytes: number }>,
    largest: number,
    holding: TenantHolding | undefined,
  ): GatewayError | undefined {
    const refusal = this.findRefusal(demand, largest, holding);
    if (!refusal) return undefined;
    let deadLetters = 0;
    for (const [lane, need] of demand) if (lane.deadLetters) deadLetters += need.records;
    if (deadLetters > 0)
      this.dropDeadLetters(refusal.code === "overloaded" ? "full" : "unavailable", deadLetters);
    else if (refusal.code === "overloaded" || refusal.code === "unavailable") this.metrics.overloaded.inc();
    return refusal;
  }

  private findRefusal(
    demand: Map<Lane, { records: number; bytes: number }>,
    largest: number,
    holding: TenantHolding | undefined,
  ): GatewayError | undefined {
    if (largest > this.maxBatchBytes)
      return new GatewayError(
        "record_too_large",
        `a record takes ${largest} bytes in Kafka; at most ${this.maxBatchBytes} fit`,
      );
    if (this.closed)
      return new GatewayError("draining", "the gateway is shutting down", { "retry-after": "1" });
    let records = 0;
    let bytes = 0;
    for (const [lane, need] of demand) {
      records += need.records;
      bytes += need.bytes;
      const refusal = this.laneRefusal(lane, need.records, need.bytes);
      if (refusal) return refusal;
    }
    if (
      this.queuedRecords + records > this.options.maxRecords ||
      this.queuedBytes + bytes > this.options.maxBytes
    )
      return new GatewayError("overloaded", "the producer queue is full", { "retry-after": "1" });
    if (holding && this.shares.refuses(holding, records, bytes, this.queuedRecords, this.queuedBytes)) {
      const refused = this.tenantShareLine.due(1);
      if (refused !== undefined)
        this.log.warn(
          {
            tenant: holding.tenant,
            refused,
            queuedRecords: this.queuedRecords,
            tenantRecords: holding.records,
          },
          "a tenant over its share of a filling producer queue was refused (503) while others get in",
        );
      return new GatewayError("overloaded", "the producer queue is full: this tenant holds its share of it", {
        "retry-after": "1",
      });
    }
    return undefined;
  }

  private laneRefusal(lane: Lane, records: number, bytes: number): GatewayError | undefined {
    const now = Date.now();
    if (lane.unavailable && now < lane.unavailable.until) return this.unavailableReply(lane);
    if (
      this.isUnhealthy() ||
      (lane.failingSince !== undefined && now - lane.failingSince >= this.options.unhealthyAfterMs)
    )
      return new GatewayError("unavailable", "Kafka is unreachable", { "retry-after": "5" });
    const share = lane.deadLetters ? DEAD_LETTER_SHARE : TOPIC_QUEUE_SHARE;
    if (
      lane.records + records > Math.max(1, Math.floor(this.options.maxRecords * share)) ||
      lane.bytes + bytes > this.options.maxBytes * share
    )
      return new GatewayError("overloaded", "the producer queue is full", { "retry-after": "1" });
    return undefined;
  }

  private whenIdle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Nothing left to flush: no data records, and no dead letters the sink can take now. */
  private isIdle(): boolean {
    const deadLetters = this.deadLetterLane();
    const waitingLetters =
      deadLetters !== undefined &&
      deadLetters.records > 0 &&
      !deadLetters.isRetrying() &&
      deadLetters.unavailable === undefined;
    return this.queuedRecords - (deadLetters?.records ?? 0) === 0 && !waitingLetters;
  }

  private wakeIfIdle(): void {
    if (this.idleWaiters.length > 0 && this.isIdle()) for (const wake of this.idleWaiters.splice(0)) wake();
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
    for (const lane of this.lanes.values()) this.pumpLane(lane);
  }

  private pumpLane(lane: Lane): void {
    for (const queue of lane.queues) this.pumpWriter(lane, queue);
  }

  /**
   * While one of its batches is retried, a writer holds its others back
   * instead of hammering a failing broker (and so keeps their order); a held
   * topic waits for its retry time. Other writers and lanes are not concerned.
   */
  private pumpWriter(lane: Lane, queue: WriterQueue): void {
    while (
      queue.inFlight < this.options.maxInFlight &&
      queue.hasPending() &&
      !queue.retrying &&
      !this.isHeld(lane)
    ) {
      queue.inFlight++;
      void this.deliver(lane, queue, queue.take(this.options.batchBytes, this.maxBatchBytes));
    }
  }

  private isHeld(lane: Lane): boolean {
    return lane.unavailable !== undefined && Date.now() < lane.unavailable.until;
  }

  private async deliver(lane: Lane, queue: WriterQueue, batch: Entry[]): Promise<void> {
    await this.send(lane, queue, batch);
    queue.inFlight--;
    this.pumpWriter(lane, queue);
  }

  /**
   * Sends `batch` until the sink acknowledges it. A batch the sink refuses for
   * good is split in halves, each sent on its own, down to the record at
   * fault, which is set aside: one bad record never stalls the queue. A batch
   * whose topic the sink refuses goes back to its lane, which is held.
   */
  private async send(lane: Lane, queue: WriterQueue, batch: Entry[]): Promise<void> {
    if (this.isHeld(lane)) {
      this.hold(lane, queue, batch, undefined);
      return;
    }
    const outcome = await this.writeUntilAnswered(lane, queue, batch);
    if (outcome === "abandoned") return;
    if (outcome === "acknowledged") {
      this.settle(lane, batch);
      return;
    }
    if (outcome instanceof SinkUnavailableError) {
      this.hold(lane, queue, batch, outcome);
      return;
    }
    if (batch.length > 1) {
      const half = Math.ceil(batch.length / 2);
      await this.send(lane, queue, batch.slice(0, half));
      await this.send(lane, queue, batch.slice(half));
      return;
    }
    this.setAside(lane, batch[0] as Entry, outcome);
  }

  /** Writes until acknowledged or answered with a refusal, retrying transient failures with bounded backoff. */
  private async writeUntilAnswered(
    lane: Lane,
    queue: WriterQueue,
    batch: Entry[],
  ): Promise<"acknowledged" | "abandoned" | UndeliverableError | SinkUnavailableError> {
    const messages = batch.map((entry) => entry.message);
    let failed = false;
    try {
      for (let attempt = 0; ; attempt++) {
        const started = performance.now();
        const sentAt = Date.now();
        try {
          await withDeadline(this.writer.write(messages, queue.writer), this.options.writeTimeoutMs, () =>
            this.writeTimeout(),
          );
          this.metrics.produceDuration.observe((performance.now() - started) / 1000);
          this.markAnswered(lane, true);
          return "acknowledged";
        } catch (error) {
          this.metrics.produceErrors.inc();
          // A refusal is still an answer: the sink is reachable, the records or the topic are the problem.
          if (error instanceof UndeliverableError || error instanceof SinkUnavailableError) {
            this.writer.reset?.(lane.topic, queue.writer);
            this.markAnswered(lane, error instanceof UndeliverableError);
            return error;
          }
          if (!failed) {
            queue.retrying = true;
            this.wakeIfIdle();
          }
          failed = true;
          this.markFailing(lane, error, sentAt);
          if (this.abandoned) return "abandoned";
          this.writer.reset?.(lane.topic, queue.writer);
          await sleep(this.backoff(attempt));
          if (this.abandoned) return "abandoned";
        }
      }
    } finally {
      if (failed) queue.retrying = false;
    }
  }

  /**
   * The sink refused the lane's topic (or the lane is held and `refusal` is
   * undefined): the batch goes back in front of its writer's queue; records
   * of requests waiting for this topic (any writer's) are dropped, each
   * refused with a 503 (`refuse`), records already answered stay for
   * the next try; dead letters are dropped.
   */
  private hold(
    lane: Lane,
    queue: WriterQueue,
    batch: Entry[],
    refusal: SinkUnavailableError | undefined,
  ): void {
    queue.requeueFront(batch);
    if (refusal) {
      const retryMs = this.closed
        ? Math.min(this.options.unavailableRetryMs, DRAIN_RETRY_MAX_MS)
        : this.options.unavailableRetryMs;
      const first = lane.unavailable === undefined;
      lane.unavailable = { code: refusal.sinkCode, until: Date.now() + retryMs };
      if (lane.retryTimer) clearTimeout(lane.retryTimer);
      if (!this.abandoned) {
        lane.retryTimer = setTimeout(() => {
          lane.retryTimer = undefined;
          this.pumpLane(lane);
        }, retryMs);
        lane.retryTimer.unref?.();
      }
      if (first) this.noteUnavailable(lane, refusal);
    }
    const dropped: Entry[] = [];
    lane.retain((entry) => {
      if (!lane.deadLetters && !entry.ticket.waits) return true;
      dropped.push(entry);
      return false;
    });
    if (dropped.length === 0) return;
    if (lane.deadLetters) this.dropDeadLetters("unavailable", dropped.length);
    const reply = this.unavailableReply(lane);
    // Each request is answered once all its records are settled (others may be written, or in flight on
    // another writer): a 503 as a whole when none was written, else these are named, the written ones not.
    for (const entry of dropped) this.refuse(entry, reply);
    this.release(lane, dropped);
  }

  /** The 503 for a held topic's requests, with the time until it is tried again. */
  private unavailableReply(lane: Lane): GatewayError {
    const until = lane.unavailable?.until ?? Date.now();
    const message =
      this.writer.kind === "kafka"
        ? `Kafka refuses writes to this topic (${lane.unavailable?.code})`
        : `the local log cannot be written (${lane.unavailable?.code})`;
    return new GatewayError("unavailable", message, {
      "retry-after": String(Math.max(1, Math.ceil((until - Date.now()) / 1000))),
    });
  }

  private noteUnavailable(lane: Lane, refusal: SinkUnavailableError): void {
    this.metrics.topicAvailable.set({ topic: lane.topic }, 0);
    if (this.writer.kind === "kafka") this.health.degrade(`${TOPIC_UNAVAILABLE_PREFIX}${lane.topic}`, true);
    else this.health.set(LOCAL_LOG_UNWRITABLE_REASON, true);
    this.log.error(
      { err: refusal.cause ?? refusal, sink: this.writer.kind, topic: lane.topic, code: refusal.sinkCode },
      lane.deadLetters
        ? "the sink refuses the dead-letter topic; dead letters are dropped until it takes them"
        : "the sink refuses a whole topic; its requests get 503 until it takes records again",
    );
    this.wakeIfIdle();
  }

  /** The sink answered for `lane`: its transient failures are over, and, if `accepted`, so is its hold. */
  private markAnswered(lane: Lane, accepted: boolean): void {
    lane.failingSince = undefined;
    lane.lastAnswerAt = Date.now();
    if (accepted && lane.unavailable) {
      lane.unavailable = undefined;
      if (lane.retryTimer) clearTimeout(lane.retryTimer);
      lane.retryTimer = undefined;
      this.metrics.topicAvailable.set({ topic: lane.topic }, 1);
      if (this.writer.kind === "kafka")
        this.health.degrade(`${TOPIC_UNAVAILABLE_PREFIX}${lane.topic}`, false);
      else if (![...this.lanes.values()].some((other) => other.unavailable))
        this.health.set(LOCAL_LOG_UNWRITABLE_REASON, false);
      this.log.info(
        { sink: this.writer.kind, topic: lane.topic },
        "the sink takes records for the topic again",
      );
    }
    this.markReachable();
  }

  /** A record the sink refused for good: dead-lettered if a topic is set (and it is not a dead letter), else dropped. */
  private setAside(lane: Lane, entry: Entry, refusal: UndeliverableError): void {
    const { message } = entry;
    const deadLetters = this.options.deadLetterTopic;
    const deadLettered =
      deadLetters !== undefined &&
      !lane.deadLetters &&
      this.requeue(
        deadLetterFor(message, deadLetters, `refused by Kafka: ${refusal.sinkCode}`, this.maxBatchBytes),
        entry.ticket.holding,
      );
    this.metrics.eventsUndeliverable.inc({ reason: refusal.reason });
    if (refusal.reason === "too_large") this.options.onTooLarge?.(message.topic);
    if (lane.deadLetters) this.dropDeadLetters("refused", 1);
    // Once per record would be a line per record when a topic refuses many (a KAFKA_MAX_MESSAGE_BYTES
    // above the topic's own limit): this record's details, and how many the line stands for.
    const records = this.refusedRecordsLine.due();
    if (records !== undefined)
      this.log.warn(
        {
          reason: refusal.reason,
          code: refusal.sinkCode,
          topic: message.topic,
          bytes: entry.bytes,
          deadLettered,
          records,
        },
        deadLettered ? "record refused by the sink: dead-lettered" : "record refused by the sink: dropped",
      );
    this.refuse(entry, refusalReply(refusal));
    this.release(lane, [entry]);
  }

  /** One record of the ticket will not be written: `error` says why, for the request's answer. */
  private refuse(entry: Entry, error: GatewayError): void {
    const { ticket } = entry;
    ticket.refused ??= [];
    ticket.refused.push({ position: entry.position, error });
    this.countDown(ticket);
  }

  /**
   * One record of the ticket is settled, written or refused for good. The
   * request is answered once all are: with the refused ones named, so a
   * client resends those alone, never the records already written.
   */
  private countDown(ticket: Ticket): void {
    ticket.remaining--;
    if (ticket.remaining > 0) return;
    if (ticket.refused === undefined) ticket.resolve();
    else ticket.reject(new RecordsRefused(ticket.refused));
  }

  /**
   * Queues a dead letter of the queue's own within the dead-letter lane's
   * bounds; false (and counted) when it cannot. It counts in the holding of
   * the refused record's tenant (still holding that record), never refused for it.
   */
  private requeue(message: SinkMessage, holding: TenantHolding): boolean {
    const bytes = recordBytes(message);
    const lane = this.lane(message.topic);
    const demand = new Map([[lane, { records: 1, bytes }]]);
    if (this.refusal(demand, bytes, undefined)) return false;
    this.writerQueue(lane, message).push({ message, bytes, ticket: noTicket(holding), position: 0 });
    this.count(lane, 1, bytes);
    this.shares.add(holding, 1, bytes);
    this.schedulePump();
    return true;
  }

  private dropDeadLetters(
    reason: "full" | "unavailable" | "refused" | "undelivered_at_exit",
    count: number,
  ): void {
    this.metrics.deadLettersDropped.inc({ reason }, count);
    const deadLetters = this.deadLettersDroppedLine.due(count);
    if (deadLetters === undefined) return;
    this.log.warn(
      { deadLetters, reason, topic: this.options.deadLetterTopic },
      "dead letters dropped: the dead-letter topic cannot take them",
    );
  }

  private count(lane: Lane, records: number, bytes: number): void {
    lane.records += records;
    lane.bytes += bytes;
    this.queuedRecords += records;
    this.queuedBytes += bytes;
  }

  private settle(lane: Lane, batch: Entry[]): void {
    for (const entry of batch) this.countDown(entry.ticket);
    const { eventsTopic } = this.options;
    if (eventsTopic === undefined || lane.topic === eventsTopic)
      this.metrics.eventsProduced.inc(batch.length);
    this.metrics.produceBatchRecords.observe(batch.length);
    this.release(lane, batch);
  }

  /** Forgets entries that left the queue, delivered, set aside or dropped. */
  private release(lane: Lane, entries: Entry[]): void {
    let bytes = 0;
    // A batch holds runs of one request's entries: each run is released from its tenant's holding at once.
    let holding: TenantHolding | undefined;
    let runRecords = 0;
    let runBytes = 0;
    for (const entry of entries) {
      bytes += entry.bytes;
      const entryHolding = entry.ticket.holding;
      if (entryHolding !== holding) {
        if (holding) this.shares.release(holding, runRecords, runBytes);
        holding = entryHolding;
        runRecords = 0;
        runBytes = 0;
      }
      runRecords++;
      runBytes += entry.bytes;
    }
    if (holding) this.shares.release(holding, runRecords, runBytes);
    this.count(lane, -entries.length, -bytes);
    this.wakeIfIdle();
  }

  private writeTimeout(): Error {
    return new SinkNoAnswerError(`no acknowledgement within ${this.options.writeTimeoutMs} ms`);
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

  /**
   * A transient failure of a write to `lane` (or of the probe) sent at `sentAt`: both unhealthy clocks
   * start if not running. A write never answered (timed out) dates them from when it was sent, or from
   * a later answer of the sink: a frozen broker is seen only at the timeout. An error the sink answered
   * dates them from now: a slow transient one (a leader election through the client's retries) would
   * otherwise start past a short grace, and /health flap to 503 until the next answer.
   */
  private markFailing(lane: Lane | undefined, error: unknown, sentAt: number): void {
    const since = error instanceof SinkNoAnswerError ? sentAt : Date.now();
    if (lane && lane.failingSince === undefined) lane.failingSince = Math.max(since, lane.lastAnswerAt);
    if (this.failingSince === undefined) {
      this.failingSince = Math.max(since, this.lastAnswerAt);
      // The metric says what happens now; /health waits for unhealthyAfterMs, alerts for their own `for`.
      this.metrics.kafkaUp.set(0);
      this.log.warn(
        { err: error, sink: this.writer.kind, topic: lane?.topic },
        "sink write failed; retrying",
      );
    }
    this.checkHealth();
  }

  private checkHealth(): void {
    if (this.failingSince === undefined || !this.isUnhealthy() || this.health.has(UNHEALTHY_REASON)) return;
    this.health.set(UNHEALTHY_REASON, true);
    // One reason at a time: never reached, and now failing past the grace, is an outage like any other.
    this.health.set(CONNECTING_REASON, false);
    this.log.error(
      { sink: this.writer.kind, failingForMs: Date.now() - this.failingSince },
      "sink unreachable",
    );
  }

  /** The sink answered something (a write, a refusal, the probe): it is reachable. */
  private markReachable(): void {
    this.lastAnswerAt = Date.now();
    if (this.connecting) {
      this.connecting = false;
      this.health.set(CONNECTING_REASON, false);
      if (this.failingSince === undefined) {
        this.metrics.kafkaUp.set(1);
        this.log.info({ sink: this.writer.kind }, "sink reached");
      }
    }
    if (this.failingSince === undefined) return;
    this.failingSince = undefined;
    this.health.set(UNHEALTHY_REASON, false);
    this.metrics.kafkaUp.set(1);
    this.log.info({ sink: this.writer.kind }, "sink reachable again");
    this.pump();
  }
}
