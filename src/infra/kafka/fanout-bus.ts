import { randomUUID } from "node:crypto";
import { Consumer } from "@platformatic/kafka";
import { CHANNEL_PATTERN } from "../../domain/channel.ts";
import type { EventRecord } from "../../domain/record.ts";
import { traceparentOf, tracestateOf } from "../../http/trace-context.ts";
import { isJsonValue } from "../../lib/json-scan.ts";
import type { Logger } from "../../log/logger.ts";
import {
  type FanoutBus,
  type FanoutListener,
  type FanoutMessage,
  type FanoutTrace,
  fanoutKey,
  type LivePosition,
  type LogRead,
  type LogReadResult,
  type RecordDataBytes,
} from "../../ports/fanout-bus.ts";
import type { HealthReasons } from "../../ports/health.ts";
import { type RecordQueue, type SinkMessage, SinkUnavailableError } from "../../ports/sink.ts";
import type { KafkaConnectionOptions } from "./client-options.ts";
import {
  connectionTo,
  holdsCompression,
  OFFSET_OUT_OF_RANGE,
  type RawPartition,
  RecordBytes,
  rawFetchApi,
  walkRecords,
} from "./fanout-fetch.ts";
import { KeptMessages } from "./kept-messages.ts";
import { PartitionHash } from "./partition-hash.ts";
import { classifyFailure } from "./writer.ts";
import { ensureZstd, isZstdUnavailable, ZSTD_BITMASK, zstdReady } from "./zstd.ts";

/** Reads records raw: headers are looked at before any value is decoded, and only the headers used are. */
type FanoutConsumer = Consumer<Buffer, Buffer, Buffer, Buffer>;

/** Bytes asked of the broker per fetch of a log read. */
const LOG_READ_FETCH_BYTES = 1024 * 1024;
const LOG_READ_GRACE_MS = 2000;
/** A batch attribute: transaction markers, which carry no message. */
const CONTROL_BATCH = 0x20;
const TENANT_HEADER = Buffer.from("tenant");
const CHANNEL_HEADER = Buffer.from("channel");
const TRUE = Buffer.from("true");
/** Wait, and bytes per partition and per answer, of the live reader's fetches. */
const LIVE_FETCH_WAIT_MS = 500;
const LIVE_FETCH_PARTITION_BYTES = 1024 * 1024;
const LIVE_FETCH_BYTES = 8 * 1024 * 1024;

const RESTART_DELAY_MS = 2000;
/**
 * How often the live reader looks for partitions added to the fan-out topic:
 * the producers of every instance write to them once their metadata shows
 * them (the client refreshes it every 5 s), and nothing else tells the reader.
 */
const PARTITION_CHECK_MS = 5000;
const NOTHING_TO_PUBLISH = Promise.resolve();
/** The fan-out record's own header: each record's id (its other headers are shared). */
const RECORD_ID_HEADER = "record-id";

/**
 * Fan-out over a Kafka topic. Publishing goes through the shared delivery
 * queue (batched, retried, bounded). Every instance reads every partition from
 * the offsets that were latest when it started, with plain fetches: its group
 * id is its own (unique, never joined, nothing committed), so instances never
 * share partitions and need no group permission. When the
 * stream fails (broker restart) it is rebuilt from the next unread offsets, so
 * no message is skipped. Partitions added to the topic while it runs are read
 * too, from their first offset.
 */
export class KafkaFanoutBus implements FanoutBus {
  private consumer: FanoutConsumer | undefined;
  /** The live reader's fetch loops; set `stopped` to end them. */
  private running: { stopped: boolean } | undefined;
  private listener: FanoutListener | undefined;
  private epoch = "";
  /** Next offset to read, per partition. */
  private readonly nextOffsets = new Map<number, bigint>();
  /** Each partition's first offset the log held at the live reader's last fetch of it (every fetch answers it). */
  private readonly logStarts = new Map<number, bigint>();
  private restartTimer: ReturnType<typeof setTimeout> | undefined;
  /** Looks for added partitions every `partitionCheckMs` while the reader runs; cleared by `close`. */
  private partitionTimer: ReturnType<typeof setInterval> | undefined;
  private checkingPartitions = false;
  private closed = false;
  private readonly partitionHash = new PartitionHash();

  /**
   * From the reader's failure until a rebuilt reader's fetch is answered: a
   * rebuild that connects but whose fetches the broker refuses (READ denied
   * on the topic) is part of the same outage, not a recovery.
   */
  private failing = false;
  /** Rebuilds that failed since the reader last ran: the first is logged, the rest counted on the rebuilt line. */
  private rebuildFailures = 0;

  constructor(
    private readonly connection: KafkaConnectionOptions,
    private readonly topic: string,
    private readonly queue: RecordQueue,
    private readonly log: Logger,
    private readonly health: HealthReasons,
    private readonly timing: { restartDelayMs: number; partitionCheckMs: number } = {
      restartDelayMs: RESTART_DELAY_MS,
      partitionCheckMs: PARTITION_CHECK_MS,
    },
  ) {}

  async start(listener: FanoutListener): Promise<void> {
    this.listener = listener;
    const consumer = this.newConsumer();
    try {
      const metadata = await consumer.metadata({ topics: [this.topic], forceUpdate: true });
      const topicId = metadata.topics.get(this.topic)?.id ?? "0";
      this.epoch = epochOf(topicId);
      const latest = (await consumer.listOffsets({ topics: [this.topic] })).get(this.topic) ?? [];
      latest.forEach((offset, partition) => {
        this.nextOffsets.set(partition, offset);
        listener.origin(this.epoch, partition, offset);
      });
      await this.consume(consumer);
      this.health.degrade(this.unreadable, false);
      this.log.info(
        { topic: this.topic, partitions: this.nextOffsets.size, epoch: this.epoch },
        "fan-out consumer reading",
      );
      this.partitionTimer = setInterval(() => void this.readAddedPartitions(), this.timing.partitionCheckMs);
      this.partitionTimer.unref?.();
    } catch (error) {
      // The topic missing at start on a cluster that does not create topics (nor lets the gateway), or READ denied.
      if (classifyFailure(error) instanceof SinkUnavailableError) this.health.degrade(this.unreadable, true);
      await forceClose(consumer);
      throw error;
    }
  }

  publish(messages: FanoutMessage[]): Promise<void> {
    return enqueueForTenants(this.queue, toFanoutRecords(this.topic, messages));
  }

  publishRecords(
    records: readonly EventRecord[],
    ts: number,
    trace: FanoutTrace | undefined,
    dataBytes?: readonly RecordDataBytes[],
  ): Promise<void> {
    const fanout = ingestedFanoutRecords(this.topic, records, ts, trace, dataBytes);
    return enqueueForTenants(this.queue, fanout);
  }

  /** The partition the producer picks for `key` (its hash modulo the partition count), and where the live reader stands on it. */
  head(key: string): LivePosition | undefined {
    const partitions = this.nextOffsets.size;
    if (partitions === 0) return undefined;
    const partition = this.partitionHash.of(key) % partitions;
    const next = this.nextOffsets.get(partition);
    if (next === undefined) return undefined;
    const logStart = this.logStarts.get(partition);
    return logStart === undefined
      ? { epoch: this.epoch, partition, next }
      : { epoch: this.epoch, partition, next, logStart };
  }

  async logEnd(partition: number): Promise<bigint> {
    const consumer = this.consumer;
    if (!consumer) throw new Error("the fan-out reader is being rebuilt");
    const ends = await consumer.listOffsets({
      topics: [this.topic],
      partitions: { [this.topic]: [partition] },
      timestamp: -1n,
    });
    const end = ends.get(this.topic)?.[partition];
    if (end === undefined) throw new Error(`no end offset for ${this.topic}/${partition}`);
    return end;
  }

  /**
   * Reads one channel's messages of a partition with a short-lived consumer
   * (a group id of its own, never joined, nothing committed): plain fetches
   * from `from`, headers compared as bytes before any value is decoded.
   */
  async readLog(request: LogRead): Promise<LogReadResult> {
    try {
      return await this.readLogOnce(request);
    } catch (error) {
      // The client decodes these batches itself: a zstd one, on a runtime without zstd, is read again with the codec loaded.
      if (zstdReady() || !isZstdUnavailable(error)) throw error;
      await ensureZstd();
      return await this.readLogOnce(request);
    }
  }

  private async readLogOnce(request: LogRead): Promise<LogReadResult> {
    const reader: FanoutConsumer = new Consumer({
      ...this.connection,
      groupId: `edge-gateway-replay-${randomUUID()}`,
      autocommit: false,
      maxWaitTime: 100,
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    // A backstop for a broker that stops answering: the read itself stops at the deadline with what it has.
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error("log read timed out")),
        Math.max(0, request.deadline - Date.now()) + LOG_READ_GRACE_MS,
      );
    });
    try {
      return await Promise.race([this.readWith(reader, request), expired]);
    } finally {
      clearTimeout(timer);
      // A read still waiting on the broker fails once its consumer is closed; its outcome is ignored.
      forceClose(reader);
    }
  }

  private async readWith(reader: FanoutConsumer, request: LogRead): Promise<LogReadResult> {
    const { partition, until } = request;
    const metadata = await reader.metadata({ topics: [this.topic], forceUpdate: true });
    const topic = metadata.topics.get(this.topic);
    const leader = topic?.partitions[partition]?.leader;
    if (!topic || leader === undefined) throw new Error(`no leader for ${this.topic}/${partition}`);
    // The epoch the read was asked for, not the live reader's: a topic made again during a scan is another log.
    if (epochOf(topic.id) !== request.epoch) return { gone: true };
    const earliest = (
      await reader.listOffsets({
        topics: [this.topic],
        partitions: { [this.topic]: [partition] },
        timestamp: -2n,
      })
    ).get(this.topic)?.[partition];
    if (earliest === undefined) throw new Error(`no earliest offset for ${this.topic}/${partition}`);
    const startsLater = earliest > request.from;
    if (startsLater && !request.fromEarliest) return { gone: true };
    const from = startsLater ? earliest : request.from;
    const tenant = Buffer.from(request.tenant);
    const channel = Buffer.from(request.channel);
    const kept = new KeptMessages(request);
    const answer = (next: bigint) => kept.answer(next, from, earliest);
    let offset = from;
    while (offset < until) {
      // Out of time: what was read so far, in order, with where to go on from.
      if (Date.now() >= request.deadline) return answer(offset);
      const response = await reader.fetch({
        node: leader,
        topics: [
          {
            topicId: topic.id,
            partitions: [
              {
                partition,
                fetchOffset: offset,
                partitionMaxBytes: LOG_READ_FETCH_BYTES,
                currentLeaderEpoch: -1,
                lastFetchedEpoch: -1,
              },
            ],
          },
        ],
        maxWaitTime: 100,
        minBytes: 1,
        maxBytes: LOG_READ_FETCH_BYTES,
      });
      const read = response.responses[0]?.partitions[0];
      if (!read?.records?.length) {
        // Nothing past `offset` although the live reader read up to `until`: the log was truncated.
        if (read && read.highWatermark <= offset) return answer(offset);
        continue;
      }
      for (const batch of read.records) {
        const batchEnd = batch.firstOffset + BigInt(batch.lastOffsetDelta) + 1n;
        if ((batch.attributes & CONTROL_BATCH) === 0) {
          for (const record of batch.records) {
            const at = batch.firstOffset + BigInt(record.offsetDelta);
            if (at < offset) continue;
            if (at >= until) return answer(until);
            if (
              !hasHeader(record.headers, TENANT_HEADER, tenant) ||
              !hasHeader(record.headers, CHANNEL_HEADER, channel)
            )
              continue;
            const message = fromFanoutRecord(record.headers, record.value);
            // A broadcast naming the channel is no event of its history (memory never keeps one): it
            // lands here only when the tenant's broadcasts share the channel's partition.
            if (!message || message === UNWANTED || message.broadcast) continue;
            if (!kept.add({ ...message, position: { epoch: request.epoch, partition, offset: at } }))
              return answer(at);
          }
        }
        if (batchEnd > offset) offset = batchEnd;
      }
    }
    return answer(until);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    if (this.partitionTimer) clearInterval(this.partitionTimer);
    await this.stop();
  }

  private newConsumer(): FanoutConsumer {
    return new Consumer({
      ...this.connection,
      groupId: `edge-gateway-fanout-${randomUUID()}`,
      autocommit: false,
      maxWaitTime: 500,
    });
  }

  /**
   * Starts the live reader on `consumer`: once the partitions' leaders and
   * the Fetch version are known, one fetch loop per leader runs in the
   * background; a failure rebuilds the reader from the next unread offsets.
   */
  private async consume(consumer: FanoutConsumer): Promise<void> {
    this.consumer = consumer;
    const metadata = await consumer.metadata({ topics: [this.topic], forceUpdate: true });
    const topic = metadata.topics.get(this.topic);
    if (!topic) throw new Error(`no metadata for ${this.topic}`);
    const epoch = epochOf(topic.id);
    if (epoch !== this.epoch) await this.startOver(consumer, epoch);
    const api = await rawFetchApi(consumer);
    const byLeader = new Map<number, number[]>();
    for (const partition of this.nextOffsets.keys()) {
      const leader = topic.partitions[partition]?.leader;
      if (leader === undefined) throw new Error(`no leader for ${this.topic}/${partition}`);
      byLeader.set(leader, [...(byLeader.get(leader) ?? []), partition]);
    }
    const run = { stopped: false };
    this.running = run;
    for (const [leader, partitions] of byLeader) {
      const broker = metadata.brokers.get(leader);
      if (!broker) throw new Error(`no broker ${leader} for ${this.topic}`);
      const fetchFrom = { topicId: api.byName ? this.topic : topic.id, run, consumer, broker, partitions };
      this.fetchLoop(api.fetch, fetchFrom).catch((error) => {
        if (!run.stopped) this.readerFailed(error);
      });
    }
  }

  /**
   * Fetches the partitions one leader holds, walking each answer before asking
   * for more. The connection is asked of the client's pool for every fetch:
   * the pool holds a request back while the connection re-authenticates
   * (KIP-368), since a Fetch sent between the SASL handshake and its
   * authentication makes the broker close the connection.
   */
  private async fetchLoop(
    fetch: Awaited<ReturnType<typeof rawFetchApi>>["fetch"],
    from: {
      topicId: string;
      run: { stopped: boolean };
      consumer: FanoutConsumer;
      broker: { host: string; port: number };
      partitions: number[];
    },
  ): Promise<void> {
    const listener = this.listener;
    const filter = {
      mayWant: listener?.mayWant ? listener.mayWant.bind(listener) : () => true,
      wants: listener?.wants ? listener.wants.bind(listener) : () => true,
    };
    const bytes = new RecordBytes(LIVE_FETCH_PARTITION_BYTES);
    while (!from.run.stopped) {
      const topics = [
        {
          topicId: from.topicId,
          partitions: from.partitions.map((partition) => ({
            partition,
            fetchOffset: this.nextOffsets.get(partition) ?? 0n,
            partitionMaxBytes: LIVE_FETCH_PARTITION_BYTES,
            currentLeaderEpoch: -1,
            lastFetchedEpoch: -1,
          })),
        },
      ];
      const connection = await connectionTo(from.consumer, from.broker);
      if (from.run.stopped) return;
      const answer = await new Promise<RawPartition[]>((resolve, reject) =>
        fetch(
          connection,
          LIVE_FETCH_WAIT_MS,
          1,
          LIVE_FETCH_BYTES,
          1,
          0,
          -1,
          topics,
          [],
          "",
          (error, partitions) => (error ? reject(error) : resolve(partitions ?? [])),
        ),
      );
      if (from.run.stopped) return;
      this.answered();
      const behind: number[] = [];
      for (const { partitionIndex: partition, errorCode, logStartOffset, records } of answer) {
        if (errorCode === OFFSET_OUT_OF_RANGE) behind.push(partition);
        if (logStartOffset >= 0n) this.logStarts.set(partition, logStartOffset);
        if (!records) continue;
        const position = { epoch: this.epoch, partition, offset: 0n };
        const fetched = bytes.join(records);
        // A zstd batch (another instance's KAFKA_FANOUT_COMPRESSION) on a runtime without zstd: its codec loads first.
        if (!zstdReady() && holdsCompression(fetched, ZSTD_BITMASK)) {
          await ensureZstd();
          // Replaced meanwhile (added partitions, a rebuild): the new loops fetch this again.
          if (from.run.stopped) return;
        }
        const next = walkRecords(
          fetched,
          this.nextOffsets.get(partition) ?? 0n,
          filter,
          (offset, headers, value) => {
            this.nextOffsets.set(partition, offset + 1n);
            const parsed = fromFanoutRecord(headers, value);
            if (!parsed || parsed === UNWANTED) {
              this.log.warn({ partition, offset: String(offset) }, "fan-out record is malformed; skipped");
              return;
            }
            listener?.deliver({ ...parsed, position: { ...position, offset } });
          },
        );
        this.nextOffsets.set(partition, next);
      }
      if (behind.length > 0) await this.moveIntoLog(from.consumer, behind);
    }
  }

  /**
   * The topic was deleted and made again since the reader last read it (a new
   * topic id): a new history. Everything in it is new here, so it is read
   * from its first offsets, under a new epoch announced as every partition's
   * origin (the history of the old one is dropped). Reading on at the old
   * offsets skipped what was written first and gave new events the ids of
   * old ones.
   */
  private async startOver(consumer: FanoutConsumer, epoch: string): Promise<void> {
    const earliest =
      (await consumer.listOffsets({ topics: [this.topic], timestamp: -2n })).get(this.topic) ?? [];
    this.log.warn(
      { topic: this.topic, from: this.epoch, to: epoch },
      "the fan-out topic was made again; reading the new one from its start",
    );
    this.epoch = epoch;
    this.nextOffsets.clear();
    this.logStarts.clear();
    earliest.forEach((offset, partition) => {
      this.nextOffsets.set(partition, offset);
      this.listener?.origin(epoch, partition, offset);
    });
  }

  /**
   * Partitions whose next offset the log no longer holds (retention or a
   * deletion passed the reader, or the log was cut back): the reader goes on
   * from the nearest offset the log holds, rather than fail every fetch. What
   * it skipped was never delivered here nor kept, so the partition's origin
   * moves there: a `since` before it is `history_gone`, never a silent gap.
   */
  private async moveIntoLog(consumer: FanoutConsumer, partitions: number[]): Promise<void> {
    const metadata = await consumer.metadata({ topics: [this.topic], forceUpdate: true });
    const id = metadata.topics.get(this.topic)?.id;
    // A topic made again starts at offset 0: the rebuild reads the new one from its start.
    if (id !== undefined && epochOf(id) !== this.epoch) throw new Error(`${this.topic} was made again`);
    const offsets = async (timestamp: bigint) =>
      (
        await consumer.listOffsets({
          topics: [this.topic],
          partitions: { [this.topic]: partitions },
          timestamp,
        })
      ).get(this.topic) ?? [];
    const [earliest, latest] = await Promise.all([offsets(-2n), offsets(-1n)]);
    for (const partition of partitions) {
      const next = this.nextOffsets.get(partition) ?? 0n;
      const start = earliest[partition];
      const end = latest[partition];
      if (start === undefined || end === undefined)
        throw new Error(`no offsets for ${this.topic}/${partition}`);
      const held = next < start ? start : next > end ? end : next;
      // Back in range by now (the log moved meanwhile): the next fetch tells.
      if (held === next) continue;
      this.log.warn(
        { partition, from: String(next), to: String(held) },
        "the fan-out log no longer holds the reader's offset; reading on from what it holds",
      );
      this.nextOffsets.set(partition, held);
      this.listener?.origin(this.epoch, partition, held);
    }
  }

  /**
   * The live reader (or an attempt to rebuild it) failed: rebuild it. Through
   * an outage an attempt fails every few seconds: the outage's first failure
   * and its first failed rebuild are logged, with their causes, not one line
   * each. A topic the broker refuses (READ denied, the topic deleted) is
   * reported in /health's `degraded`: every instance sees the same, and
   * publishes still get 202 while no subscriber receives them.
   */
  private readerFailed(error: unknown): void {
    const refusal = classifyFailure(error);
    // The client's message names only the request ("… executing API Fetch(v17)"): the broker's code says why.
    const code = refusal instanceof SinkUnavailableError ? { code: refusal.sinkCode } : {};
    if (!this.failing) {
      this.failing = true;
      this.log.warn({ err: error, ...code }, "fan-out consumer failed; rebuilding it");
    } else if (this.rebuildFailures++ === 0) {
      this.log.warn(
        { err: error, ...code, retryEveryMs: this.timing.restartDelayMs },
        "fan-out consumer rebuild failed; retrying until it succeeds",
      );
    }
    if (refusal instanceof SinkUnavailableError) this.health.degrade(this.unreadable, true);
    this.scheduleRestart();
  }

  /** A fetch of the live reader was answered: an outage it was in is over. */
  private answered(): void {
    if (!this.failing) return;
    this.failing = false;
    this.health.degrade(this.unreadable, false);
    this.log.info({ failedAttempts: this.rebuildFailures }, "fan-out consumer rebuilt");
    this.rebuildFailures = 0;
  }

  /** The /health `degraded` reason while the broker refuses this reader its topic. */
  private get unreadable(): string {
    return `kafka_topic_unreadable:${this.topic}`;
  }

  /**
   * Partitions added to the topic since the reader started: read from their
   * first offset (the producers may have written there before this look),
   * announced as the partitions' origin, and fetched from now on, the fetch
   * loops restarted to include them. `head` then maps keys over the new count,
   * as the producers do. A look that fails waits for the next one.
   */
  private async readAddedPartitions(): Promise<void> {
    const consumer = this.consumer;
    const running = this.running;
    if (!consumer || !running || this.restartTimer || this.checkingPartitions) return;
    this.checkingPartitions = true;
    try {
      const metadata = await consumer.metadata({ topics: [this.topic], forceUpdate: true });
      const described = metadata.topics.get(this.topic);
      if (described && epochOf(described.id) !== this.epoch) {
        // Made again with no fetch failing (the old one was empty): the rebuild reads the new one.
        running.stopped = true;
        this.scheduleRestart();
        return;
      }
      const count = described?.partitionsCount ?? 0;
      const known = this.nextOffsets.size;
      if (count <= known) return;
      const added = Array.from({ length: count - known }, (_, i) => known + i);
      const earliest =
        (
          await consumer.listOffsets({
            topics: [this.topic],
            partitions: { [this.topic]: added },
            timestamp: -2n,
          })
        ).get(this.topic) ?? [];
      // Rebuilt meanwhile (it reads the partitions known when it started): the next look adds them.
      if (consumer !== this.consumer || running !== this.running) return;
      for (const partition of added) {
        const first = earliest[partition] ?? 0n;
        this.nextOffsets.set(partition, first);
        this.listener?.origin(this.epoch, partition, first);
      }
      this.log.info(
        { topic: this.topic, partitions: count },
        "fan-out topic has more partitions; reading them",
      );
      // The fetch loops under way end with their fetch (its answer dropped); new ones cover every partition.
      running.stopped = true;
      this.running = undefined;
      await this.consume(consumer).catch((error) => this.readerFailed(error));
    } catch {
      // Kafka unreachable: the reader's own failure, if any, rebuilds it; the next look tries again.
    } finally {
      this.checkingPartitions = false;
    }
  }

  private scheduleRestart(): void {
    if (this.closed || this.restartTimer) return;
    this.restartTimer = setTimeout(async () => {
      this.restartTimer = undefined;
      await this.stop();
      if (this.closed) return;
      // Rebuilt once a fetch is answered (readerRecovered): connecting alone proves nothing.
      this.consume(this.newConsumer()).catch((error) => this.readerFailed(error));
    }, this.timing.restartDelayMs);
    this.restartTimer.unref?.();
  }

  private async stop(): Promise<void> {
    const { running, consumer } = this;
    if (running) running.stopped = true;
    this.running = undefined;
    this.consumer = undefined;
    if (consumer) await forceClose(consumer);
  }
}

/**
 * Fan-out records: the payload as the value, byte for byte as it was
 * published, and everything else in headers, so no instance parses and
 * re-serialises the payload (which would alter big numbers). The messages of
 * one channel in a run of one tenant, time, record type and trace (an
 * ingested batch) share one key and one headers object (tenant, ts, content
 * type, record type, channel, trace context), encoded once per batch; the
 * record id is each record's own header.
 */
export function toFanoutRecords(topic: string, messages: readonly FanoutMessage[]): SinkMessage[] {
  const records = new Array<SinkMessage>(messages.length);
  let sharedBy: FanoutMessage | undefined;
  // Per channel of the run (a broadcast has its own entry): one key string, hashed (partition, producer) and measured once.
  let channels = new Map<string | undefined, { key: string; headers: SinkMessage["headers"] }>();
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i] as FanoutMessage;
    if (sharedBy === undefined || !sameSharedHeaders(sharedBy, message)) {
      sharedBy = message;
      channels = new Map();
    }
    // A broadcast may name a channel too (its header): one entry per channel among broadcasts as well.
    const slot = message.broadcast ? `${BROADCAST_SLOT}${message.channel ?? ""}` : message.channel;
    let shared = channels.get(slot);
    if (shared === undefined) {
      shared = { key: fanoutKey(message), headers: sharedHeaders(message) };
      channels.set(slot, shared);
    }
    const record: SinkMessage = { topic, key: shared.key, value: message.dataJson, headers: shared.headers };
    if (message.record !== undefined) {
      record.ownHeader = RECORD_ID_HEADER;
      record.ownHeaderValue = message.record.id;
    }
    records[i] = record;
  }
  return records;
}

/**
 * Queues fan-out records ("acknowledged") in their tenants' names, each
 * tenant charged its own records in its share of the producer queue. A call's
 * records are nearly always one tenant's (a publish, one request's records):
 * one `enqueue` then. Records of several tenants go in one `enqueue` per
 * tenant; the promise rejects if any of them is refused (the others stay
 * queued: each tenant's are admitted or refused on their own).
 */
function enqueueForTenants(queue: RecordQueue, records: SinkMessage[]): Promise<void> {
  const first = records[0];
  if (first === undefined) return NOTHING_TO_PUBLISH;
  const tenant = first.headers.tenant as string;
  let index = 1;
  while (index < records.length && (records[index] as SinkMessage).headers.tenant === tenant) index++;
  if (index === records.length) return queue.enqueue(records, "acknowledged", tenant);
  const byTenant = new Map<string, SinkMessage[]>();
  for (const record of records) {
    const own = record.headers.tenant as string;
    const group = byTenant.get(own);
    if (group) group.push(record);
    else byTenant.set(own, [record]);
  }
  return Promise.all(Array.from(byTenant, ([own, group]) => queue.enqueue(group, "acknowledged", own))).then(
    () => undefined,
  );
}

/** Prefixes a broadcast's entry among a run's channels (no channel is named so: `$` is not allowed in one). */
const BROADCAST_SLOT = "$broadcast";

/** The headers a channel's messages of a run have in common. */
function sharedHeaders(message: FanoutMessage): SinkMessage["headers"] {
  const headers: SinkMessage["headers"] = {
    tenant: message.tenant,
    ts: String(message.ts),
    "content-type": "application/json",
  };
  if (message.broadcast) headers.broadcast = "true";
  if (message.record) headers["record-type"] = message.record.type;
  if (message.channel !== undefined) headers.channel = message.channel;
  if (message.traceparent !== undefined) headers.traceparent = message.traceparent;
  if (message.tracestate !== undefined) headers.tracestate = message.tracestate;
  return headers;
}

function sameSharedHeaders(a: FanoutMessage, b: FanoutMessage): boolean {
  return (
    a.tenant === b.tenant &&
    a.ts === b.ts &&
    a.record?.type === b.record?.type &&
    a.traceparent === b.traceparent &&
    a.tracestate === b.tracestate
  );
}

/**
 * `toFanoutRecords` of the messages `publishRecords` stands for, built from
 * the records themselves: one object per record on its way to the encoder
 * (no FanoutMessage in between). A request's records share a tenant; per
 * channel and type they share one key and one headers object. With
 * `dataBytes`, a record's value is the bytes its `dataJson` already has.
 */
export function ingestedFanoutRecords(
  topic: string,
  records: readonly EventRecord[],
  ts: number,
  trace: FanoutTrace | undefined,
  dataBytes?: readonly RecordDataBytes[],
): SinkMessage[] {
  const fanout: SinkMessage[] = [];
  let channels:
    | Map<string, { tenant: string; type: string; key: string; headers: SinkMessage["headers"] }>
    | undefined;
  let stamp: string | undefined;
  const compact = dataBytes === undefined ? undefined : compactBuffer(records, dataBytes);
  let compacted = 0;
  for (let i = 0; i < records.length; i++) {
    const record = records[i] as EventRecord;
    const channel = record.channel;
    if (channel === undefined) continue;
    channels ??= new Map();
    let shared = channels.get(channel);
    if (shared === undefined || shared.type !== record.type || shared.tenant !== record.tenant) {
      stamp ??= String(ts);
      const headers: SinkMessage["headers"] = {
        tenant: record.tenant,
        ts: stamp,
        "content-type": "application/json",
        "record-type": record.type,
        channel,
      };
      if (trace !== undefined) {
        headers.traceparent = trace.traceparent;
        if (trace.tracestate !== undefined) headers.tracestate = trace.tracestate;
      }
      shared = { tenant: record.tenant, type: record.type, key: `${record.tenant}/${channel}`, headers };
      channels.set(channel, shared);
    }
    // The payload's bytes, where the record's value holds them: copied, not measured and encoded again.
    const data = dataBytes?.[i];
    const known = data !== undefined && data.dataStart >= 0;
    let valueBytes = known ? data.valueBytes : undefined;
    let valueStart = known ? data.dataStart : undefined;
    if (known && compact !== undefined) {
      compact.set(data.valueBytes.subarray(data.dataStart, data.dataEnd), compacted);
      valueBytes = compact;
      valueStart = compacted;
      compacted += data.dataEnd - data.dataStart;
    }
    fanout.push({
      topic,
      key: shared.key,
      value: record.dataJson,
      valueBytes,
      valueStart,
      valueEnd: known ? (valueStart as number) + data.dataEnd - data.dataStart : undefined,
      headers: shared.headers,
      ownHeader: RECORD_ID_HEADER,
      ownHeaderValue: record.id,
    });
  }
  return fanout;
}

/** The bytes a fan-out copy may keep of its request's values beyond its own data, before it gets them alone. */
const SHARED_VALUES_SLACK = 1024;

/**
 * A buffer for the fan-out copies' data alone, when the request's values are
 * mostly other records': the copies outlive those in the queue while the
 * fan-out topic lags, and are counted by their data only, so sharing the
 * request's buffer would hold up to its whole body per copy, unaccounted.
 * Undefined (the copies share it) when their data is most of it.
 */
function compactBuffer(
  records: readonly EventRecord[],
  dataBytes: readonly RecordDataBytes[],
): Buffer | undefined {
  let shared: Buffer | undefined;
  let bytes = 0;
  let copies = 0;
  for (let i = 0; i < records.length; i++) {
    const data = dataBytes[i];
    if ((records[i] as EventRecord).channel === undefined || data === undefined || data.dataStart < 0)
      continue;
    // The ingest route gives a request's values one buffer; another layout is left as it is.
    if (shared !== undefined && data.valueBytes !== shared) return undefined;
    shared = data.valueBytes;
    bytes += data.dataEnd - data.dataStart;
    copies++;
  }
  if (shared === undefined || shared.byteLength <= 2 * bytes + SHARED_VALUES_SLACK * copies) return undefined;
  return Buffer.allocUnsafeSlow(bytes);
}

type RawHeaders = Iterable<[Buffer | null | undefined, Buffer | null | undefined]>;

/** What `fromFanoutRecord` answers for a record no local connection wants: nothing past its headers was decoded. */
export const UNWANTED = "unwanted";

/**
 * The message back from a fan-out record read raw; undefined when it was not
 * written by a gateway, `UNWANTED` when `wants` refuses its tenant and channel.
 * Only the tenant and channel headers are decoded before `wants` is asked;
 * the other headers and the value only once it says yes, and the value is
 * scanned as the bytes it arrived as.
 */
export function fromFanoutRecord(
  headers: RawHeaders,
  value: Buffer | null | undefined,
  wants?: (tenant: string, channel: string | undefined) => boolean,
): FanoutMessage | undefined | typeof UNWANTED {
  let tenant: string | undefined;
  let channel: string | undefined;
  let broadcast = false;
  let rawTs: Buffer | undefined;
  let rawType: Buffer | undefined;
  let rawId: Buffer | undefined;
  let rawTraceparent: Buffer | undefined;
  let rawTracestate: Buffer | undefined;
  for (const [key, found] of headers) {
    if (!key || !found) continue;
    switch (key.toString("latin1")) {
      case "tenant":
        tenant = found.toString();
        break;
      case "channel":
        channel = found.toString();
        break;
      case "broadcast":
        broadcast = found.equals(TRUE);
        break;
      case "ts":
        rawTs = found;
        break;
      case "record-type":
        rawType = found;
        break;
      case "record-id":
        rawId = found;
        break;
      case "traceparent":
        rawTraceparent = found;
        break;
      case "tracestate":
        rawTracestate = found;
        break;
    }
  }
  if (!tenant || (channel === undefined && !broadcast)) return undefined;
  if (wants && !broadcast && !wants(tenant, channel)) return UNWANTED;
  if (channel !== undefined && !CHANNEL_PATTERN.test(channel)) return undefined;
  if (!value || !isJsonValue(value)) return undefined;
  const ts = rawTs ? Number(rawTs.toString("latin1")) : Number.NaN;
  const message: FanoutMessage = { tenant, dataJson: value.toString(), ts: ts || Date.now() };
  if (channel !== undefined) message.channel = channel;
  if (broadcast) message.broadcast = true;
  if (rawType && rawId) message.record = { type: rawType.toString(), id: rawId.toString() };
  // Subscribers' frames carry the publisher's trace context; a record not written by a gateway may hold anything.
  const received = rawTraceparent?.toString("latin1");
  const traceparent = received === undefined ? undefined : traceparentOf(received);
  if (traceparent !== undefined) {
    message.traceparent = traceparent;
    // Checked as a request's is: an invalid one is dropped, a long one cut, before it reaches a frame.
    const tracestate = rawTracestate ? tracestateOf(rawTracestate.toString()) : undefined;
    if (tracestate !== undefined) message.tracestate = tracestate;
  }
  return message;
}

/** The topic id changes when the topic is recreated: that is when old event ids stop meaning anything. */
function epochOf(topicId: string): string {
  return `k${topicId.replaceAll("-", "").slice(0, 12)}`;
}

function hasHeader(headers: [Buffer | null, Buffer | null][], name: Buffer, value: Buffer): boolean {
  for (const [key, found] of headers) {
    if (key?.equals(name)) return found?.equals(value) === true;
  }
  return false;
}

/** Closes without waiting for in-flight fetches; errors on the way out are irrelevant. */
function forceClose(consumer: FanoutConsumer): Promise<void> {
  return new Promise((resolve) => consumer.close(true, () => resolve()));
}
