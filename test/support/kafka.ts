import { Admin, Consumer, type Message, stringDeserializers } from "@platformatic/kafka";
import type { RecordQueue } from "../../src/ports/sink.ts";

/** Addresses of the real services started by scripts/services (see scripts/test-all). */
export function services() {
  const brokers = process.env.KAFKA_BROKERS;
  const redisUrl = process.env.REDIS_URL;
  if (!brokers || !redisUrl) {
    throw new Error('KAFKA_BROKERS and REDIS_URL must be set: run `eval "$(scripts/services env)"` first');
  }
  return { brokers, redisUrl };
}

/** The connection options of a fan-out bus or producer of a test against the real broker. */
export function busConnection(clientId: string) {
  return {
    clientId,
    bootstrapBrokers: services().brokers.split(","),
    connectTimeout: 5000,
    requestTimeout: 10_000,
    retries: 1,
    retryDelay: 250,
  };
}

/** A fan-out bus's record queue that takes every record and keeps none (the test produces itself). */
export const discardingQueue: RecordQueue = {
  maxRecordBytes: 1_000_000,
  fits: () => true,
  enqueue: async () => {},
};

/** A fresh topic per test, so tests never see each other's records. */
export async function createTopic(prefix: string, partitions = 3): Promise<string> {
  const topic = `${prefix}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
  const admin = new Admin({ clientId: "test-admin", bootstrapBrokers: services().brokers.split(",") });
  try {
    await admin.createTopics({ topics: [topic], partitions, replicas: 1 });
  } finally {
    await admin.close();
  }
  return topic;
}

export type ReadMessage = Message<string, string, string, string>;

/**
 * Reads `topic` from the beginning to its end: waits (up to `timeoutMs`) until
 * its end offsets hold at least `expected` records, then reads every
 * partition up to those end offsets, so that a duplicate written before them is
 * always in what comes back, however slowly it is read. Returns what it read
 * (the caller asserts the count: fewer than `expected` when they never came).
 */
export async function readTopic(topic: string, expected: number, timeoutMs = 30_000): Promise<ReadMessage[]> {
  const consumer = new Consumer({
    clientId: "test-reader",
    groupId: `test-reader-${Date.now()}-${Math.random().toString(36).slice(2)}`,
    bootstrapBrokers: services().brokers.split(","),
    deserializers: stringDeserializers,
    maxWaitTime: 200,
  });
  const messages: ReadMessage[] = [];
  const deadline = Date.now() + timeoutMs;
  try {
    let ends: bigint[] = [];
    for (;;) {
      ends = (await consumer.listOffsets({ topics: [topic] })).get(topic) ?? [];
      const total = ends.reduce((sum, end) => sum + end, 0n);
      if (total >= BigInt(expected) || Date.now() > deadline) break;
      await Bun.sleep(100);
    }
    const unfinished = new Set(ends.flatMap((end, partition) => (end > 0n ? [partition] : [])));
    if (unfinished.size === 0) return messages;
    const stream = await consumer.consume({
      topics: [topic],
      mode: "earliest",
      autocommit: false,
      maxWaitTime: 200,
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${topic} not read to its end offsets within ${timeoutMs} ms`)),
        Math.max(deadline - Date.now(), 10_000),
      );
      stream.on("data", (message) => {
        const end = ends[message.partition] ?? 0n;
        if (message.offset < end) messages.push(message);
        if (message.offset + 1n >= end) unfinished.delete(message.partition);
        if (unfinished.size === 0) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    await stream.close();
  } finally {
    await consumer.close(true);
  }
  return messages;
}

/** How many partitions `topic` has (it must exist). */
export async function partitionCount(topic: string): Promise<number> {
  const consumer = new Consumer({
    clientId: "test-partitions",
    groupId: `test-partitions-${Date.now()}-${Math.random().toString(36).slice(2)}`,
    bootstrapBrokers: services().brokers.split(","),
  });
  try {
    return ((await consumer.listOffsets({ topics: [topic] })).get(topic) ?? []).length;
  } finally {
    await consumer.close(true);
  }
}

/** Delivery invariants: every expected id exactly once, nothing else. */
export function assertExactlyOnce(
  ids: string[],
  expected: string[],
): { missing: string[]; duplicates: string[]; unexpected: string[] } {
  const seen = new Map<string, number>();
  for (const id of ids) seen.set(id, (seen.get(id) ?? 0) + 1);
  const expectedSet = new Set(expected);
  return {
    missing: expected.filter((id) => !seen.has(id)),
    duplicates: [...seen].filter(([, count]) => count > 1).map(([id]) => id),
    unexpected: [...seen.keys()].filter((id) => !expectedSet.has(id)),
  };
}

/** The compression attribute of the first record batch of partition 0 (0 none, 3 lz4), as stored. */
export async function storedCompression(topic: string): Promise<number> {
  const consumer = new Consumer({
    clientId: "test-compression-reader",
    bootstrapBrokers: [services().brokers],
    groupId: `test-compression-reader-${topic}`,
  });
  try {
    const metadata = await consumer.metadata({ topics: [topic], forceUpdate: true });
    const found = metadata.topics.get(topic);
    const leader = found?.partitions[0]?.leader;
    if (!found || leader === undefined) throw new Error(`no leader for ${topic}`);
    const response = await consumer.fetch({
      node: leader,
      topics: [
        {
          topicId: found.id,
          partitions: [
            {
              partition: 0,
              fetchOffset: 0n,
              partitionMaxBytes: 1 << 20,
              currentLeaderEpoch: -1,
              lastFetchedEpoch: -1,
            },
          ],
        },
      ],
      maxWaitTime: 100,
      minBytes: 1,
      maxBytes: 1 << 20,
    });
    const stored = response.responses[0]?.partitions[0]?.records?.[0];
    if (!stored) throw new Error(`nothing stored in ${topic}`);
    return stored.attributes & 0x07;
  } finally {
    await new Promise<void>((resolve) => consumer.close(true, () => resolve()));
  }
}

/** A record as `kcat -J` prints it: headers are a flat [name, value, name, value, …] list. */
export interface KcatRecord {
  partition: number;
  offset: number;
  key: string | null;
  payload: string;
  headers?: string[];
}

/** The whole topic as kcat, the client users have, reads it (it decompresses every codec). */
export async function readWithKcat(topic: string): Promise<KcatRecord[]> {
  const child = Bun.spawn(
    ["kcat", "-C", "-b", services().brokers, "-t", topic, "-o", "beginning", "-e", "-J", "-q"],
    {
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  const [stdout, code] = await Promise.all([new Response(child.stdout).text(), child.exited]);
  if (code !== 0)
    throw new Error(`kcat exited ${code} reading ${topic}: ${await new Response(child.stderr).text()}`);
  return stdout
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line) as KcatRecord);
}
