import { describe, expect, test } from "bun:test";
import { compressionsAlgorithms } from "@platformatic/kafka";
import { COMPRESSIONS } from "../../src/config/config.ts";
import { createTopic, readWithKcat, services, storedCompression } from "../support/kafka.ts";
import { token } from "../support/tokens.ts";
import {
  connectSubscriber,
  publishEvent,
  RUNTIMES,
  type RunningGateway,
  startGateway,
  type TestSocket,
  waitForLog,
} from "./harness.ts";

const RECORDS = [
  { type: "click", key: "device-7", data: { element: "ünïcødé ✓ 𝄞" } },
  { type: "click", data: { element: "x".repeat(200) } },
  { type: "page_view", data: { url: "https://example.com/a", title: "a" } },
];

/** The request body: RECORDS, the first one's data with a big integer JSON.stringify would round. */
const BODY = JSON.stringify(RECORDS).replace('"ünïcødé ✓ 𝄞"}', '"ünïcødé ✓ 𝄞","n":9007199254740993}');

/**
 * KAFKA_COMPRESSION, each value the docs list, from outside: the records one
 * request sent are stored in one batch with that codec (as the broker keeps
 * it) and read back by kcat with their key (the record's, else the tenant),
 * headers and value. zstd too on Node 20, whose zlib lacks it (the gateway
 * uses a WebAssembly zstd there).
 */
describe.each(RUNTIMES)("KAFKA_COMPRESSION on %s", (runtime) => {
  test("every codec writes records kcat reads back, stored with that codec", async () => {
    const authorization = `Bearer ${await token("acme", ["ingest"])}`;
    // Settled, not all: a failing codec must not end the test while the others' gateways still run.
    const outcomes = await Promise.allSettled(
      COMPRESSIONS.map(async (codec) => {
        const topic = await createTopic(`compression-${codec}-${runtime}`, 1);
        const gateway = await startGateway(runtime, {
          KAFKA_BROKERS: services().brokers,
          KAFKA_TOPIC: topic,
          KAFKA_COMPRESSION: codec,
        });
        try {
          const response = await fetch(`${gateway.url}/v1/events`, {
            method: "POST",
            headers: { authorization, "content-type": "application/json" },
            body: BODY,
          });
          expect({ codec, status: response.status }).toEqual({ codec, status: 202 });
          expect(((await response.json()) as { accepted: number }).accepted).toBe(RECORDS.length);
        } finally {
          await gateway.stop("SIGKILL");
        }
        const read = await readWithKcat(topic);
        expect(read.map((record) => [codec, record.key])).toEqual([
          [codec, "device-7"],
          [codec, "acme"],
          [codec, "acme"],
        ]);
        for (const [index, record] of read.entries()) {
          const sent = RECORDS[index] as (typeof RECORDS)[number];
          expect(record.headers).toEqual([
            "tenant",
            "acme",
            "type",
            sent.type,
            "content-type",
            "application/json",
          ]);
          const value = JSON.parse(record.payload) as Record<string, unknown>;
          expect(value.tenant).toBe("acme");
          expect(value.type).toBe(sent.type);
          expect(typeof value.id).toBe("string");
          expect(typeof value.receivedAt).toBe("string");
        }
        // The value as sent: the big integer and the text byte for byte.
        expect(read[0]?.payload).toContain('"data":{"element":"ünïcødé ✓ 𝄞","n":9007199254740993}');
        expect({ codec, stored: await storedCompression(topic) }).toEqual({
          codec,
          stored: compressionsAlgorithms[codec].bitmask,
        });
      }),
    );
    for (const outcome of outcomes) if (outcome.status === "rejected") throw outcome.reason;
  }, 60_000);
});

type Frame = Record<string, unknown>;

/** The next `count` events of `channel` on `socket`. */
async function events(socket: TestSocket, channel: string, count: number): Promise<Frame[]> {
  const received: Frame[] = [];
  while (received.length < count)
    received.push(await socket.next((frame) => frame.type === "event" && frame.channel === channel, 15_000));
  return received;
}

/** What a gateway logged at warn or above: a fan-out reader failing on a batch says so there. */
const complaints = (gateway: RunningGateway) =>
  gateway.logs
    .filter((entry) => typeof entry.level === "number" && entry.level >= 40)
    .map((entry) => entry.msg);

/**
 * A fan-out topic written with zstd by another instance (Bun, with
 * KAFKA_FANOUT_COMPRESSION=zstd) is read by Node 20 gateways that have no zstd
 * of their own and were not set to write it: live, by the fan-out reader, and
 * from the log, by an instance that never read those batches live and
 * replays them for a resuming subscriber.
 */
describe.if(RUNTIMES.includes("node"))("a zstd fan-out topic read on Node 20", () => {
  test("events a Bun gateway published zstd-compressed reach a Node gateway's subscriber live and resumed from the log", async () => {
    const fanoutTopic = await createTopic("compression-fanout-zstd", 1);
    const env = {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: await createTopic("compression-fanout-zstd-events", 1),
      KAFKA_FANOUT_TOPIC: fanoutTopic,
    };
    const gateways: RunningGateway[] = [];
    try {
      const writer = await startGateway("bun", { ...env, KAFKA_FANOUT_COMPRESSION: "zstd" });
      gateways.push(writer);
      // Not set to write zstd: it meets zstd only in what it reads.
      const reader = await startGateway("node", env);
      gateways.push(reader);
      await Promise.all(gateways.map((gateway) => waitForLog(gateway, "fan-out consumer reading")));
      const socket = await connectSubscriber(reader);
      socket.send({ type: "subscribe", channel: "zipped" });
      const subscribed = await socket.next((frame) => frame.type === "subscribed");
      const text = `ünïcødé ✓ 𝄞 ${"compressible ".repeat(40)}`;
      for (let n = 0; n < 5; n++) await publishEvent(writer, "zipped", { n, text });
      const live = await events(socket, "zipped", 5);
      expect(live.map((event) => event.data)).toEqual(Array.from({ length: 5 }, (_, n) => ({ n, text })));
      expect(await storedCompression(fanoutTopic)).toBe(compressionsAlgorithms.zstd.bitmask);
      socket.close();

      // An instance started after them has them only in the topic: a resume from before them reads the log.
      const late = await startGateway("node", env);
      gateways.push(late);
      await waitForLog(late, "fan-out consumer reading");
      const resumed = await connectSubscriber(late);
      resumed.send({ type: "subscribe", channel: "zipped", since: subscribed.lastEventId });
      const replayed = await events(resumed, "zipped", 5);
      expect(replayed.map((event) => event.id)).toEqual(live.map((event) => event.id));
      expect(replayed.map((event) => event.data)).toEqual(live.map((event) => event.data));
      resumed.close();
      expect({ reader: complaints(reader), late: complaints(late) }).toEqual({ reader: [], late: [] });
    } finally {
      await Promise.all(gateways.map((gateway) => gateway.stop("SIGKILL")));
    }
  }, 60_000);
});
