import { expect, test } from "bun:test";
import { Admin, Producer, stringSerializers } from "@platformatic/kafka";
import pino from "pino";
import { HealthState } from "../../src/features/operations/health.ts";
import { isPending, Resume, type ResumeOutcome } from "../../src/features/realtime/resume.ts";
import { KafkaFanoutBus, toFanoutRecords } from "../../src/infra/kafka/fanout-bus.ts";
import type { LogRead } from "../../src/ports/fanout-bus.ts";
import { headersOf } from "../../src/ports/sink.ts";
import { watchedHistory } from "../support/fanout-log.ts";
import { busConnection, createTopic, discardingQueue } from "../support/kafka.ts";
import { waitUntil } from "../support/wait.ts";

const connection = busConnection("latest-cache-test");
const queue = discardingQueue;
const limits = {
  maxConcurrent: 4,
  maxConcurrentPerTenant: 4,
  maxBytes: 1 << 20,
  timeoutMs: 10_000,
  scanMaxOffsets: 262_144,
  latestCacheBytes: 1 << 20,
};

/** An instance's resume over the real bus: memory keeps only watched channels, as with Kafka. */
function resumeOver(bus: KafkaFanoutBus): Resume {
  const history = watchedHistory(10);
  const head = bus.head("acme/quiet");
  if (head) history.setOrigin(head.epoch, head.partition, 0n);
  return new Resume(history, bus, limits);
}

async function latest(resume: Resume): Promise<ResumeOutcome> {
  const outcome = resume.latest("acme", "quiet", 100);
  return isPending(outcome) ? await outcome.outcome : outcome;
}

// Found from outside: with Kafka, every GET /v1/channels/{c}/events without since of a channel this
// instance did not hold read its partition back again, up to REPLAY_SCAN_MAX_OFFSETS offsets: about
// 0.6 s of gateway CPU per GET for a quiet channel sharing its partition with a busy one.
test("a second request for a quiet channel's latest events reads only the offsets written since, and answers as a fresh scan", async () => {
  const topic = await createTopic("latest-cache", 1);
  const bus = new KafkaFanoutBus(connection, topic, queue, pino({ level: "silent" }), new HealthState());
  const producer = new Producer({ ...connection, serializers: stringSerializers });
  const admin = new Admin({ clientId: "latest-cache-admin", bootstrapBrokers: connection.bootstrapBrokers });
  const write = async (channel: string, count: number) => {
    const records = toFanoutRecords(
      topic,
      Array.from({ length: count }, (_, n) => ({ tenant: "acme", channel, dataJson: `{"n":${n}}`, ts: 1 })),
    );
    for (let i = 0; i < records.length; i += 1000) {
      await producer.send({
        messages: records.slice(i, i + 1000).map((record) => ({
          topic,
          key: record.key,
          value: record.value as string,
          headers: headersOf(record),
        })),
      });
    }
  };
  const reached = (next: bigint) =>
    waitUntil(async () => (bus.head("acme/quiet")?.next ?? 0n) >= next, "the live reader at the log's end");
  try {
    await bus.start({ deliver: () => {}, origin: () => {} });
    await write("quiet", 3);
    await write("busy", 6000);
    await reached(6003n);
    const resume = resumeOver(bus);
    // A spy on the real bus: the offsets each read of the log covers.
    const reads: LogRead[] = [];
    const readLog = bus.readLog.bind(bus);
    bus.readLog = (request) => {
      reads.push(request);
      return readLog(request);
    };
    const offsetsRead = () => reads.reduce((sum, read) => sum + Number(read.until - read.from), 0);
    expect(await latest(resume)).toMatchObject({ events: [{}, {}, {}], next: null });
    expect(offsetsRead()).toBeGreaterThanOrEqual(6003);

    reads.length = 0;
    await write("busy", 500);
    await write("quiet", 1);
    await reached(6504n);
    const second = await latest(resume);
    expect(offsetsRead()).toBeLessThanOrEqual(501);
    expect(second).toEqual(await latest(resumeOver(bus)));
    expect(second).toMatchObject({ events: [{}, {}, {}, {}] });

    // Nothing written since: no read of the log at all (each would open a consumer of its own).
    reads.length = 0;
    expect(await latest(resume)).toEqual(second);
    expect(reads).toHaveLength(0);

    // The log no longer holds the first quiet events: the answer leaves them out, as a scan would, told
    // where the log starts by the live reader's fetches.
    await admin.deleteRecords({ topics: [{ name: topic, partitions: [{ partition: 0, offset: 2n }] }] });
    await waitUntil(
      async () => (bus.head("acme/quiet")?.logStart ?? 0n) >= 2n,
      "the live reader told the log's new start",
    );
    const third = await latest(resume);
    expect(reads).toHaveLength(0);
    expect(third).toEqual(await latest(resumeOver(bus)));
    expect(third).toMatchObject({ events: [{}, {}] });
  } finally {
    await Promise.all([bus.close(), admin.close(), producer.close()]);
  }
}, 60_000);
