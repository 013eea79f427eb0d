import { describe, expect, test } from "bun:test";
import pino from "pino";
import { type ErrorCode, GatewayError } from "../../../src/domain/errors.ts";
import { HealthState } from "../../../src/features/operations/health.ts";
import {
  CONNECTING_REASON,
  DeliveryQueue,
  type DeliveryQueueOptions,
  NO_TENANT,
  UNHEALTHY_REASON,
} from "../../../src/infra/delivery/delivery-queue.ts";
import { recordBytes } from "../../../src/infra/delivery/record-size.ts";
import { KafkaFanoutBus } from "../../../src/infra/kafka/fanout-bus.ts";
import { createMetrics } from "../../../src/metrics/metrics.ts";
import type { FanoutMessage } from "../../../src/ports/fanout-bus.ts";
import {
  RecordsRefused,
  type SinkMessage,
  SinkNoAnswerError,
  SinkUnavailableError,
  type SinkWriter,
  UndeliverableError,
} from "../../../src/ports/sink.ts";
import { waitUntil } from "../../support/wait.ts";

/** A writer whose availability the test controls; the queue, not the writer, is under test. */
class ControlledWriter implements SinkWriter {
  readonly kind = "kafka";
  readonly batches: SinkMessage[][] = [];
  failing = false;
  attempts = 0;
  /** When a write first failed (Date.now()), if one did. */
  firstFailureAt: number | undefined;
  /** Answers a batch with a refusal, as the broker does for MESSAGE_TOO_LARGE, TOPIC_AUTHORIZATION_FAILED and the like. */
  refuse: (batch: SinkMessage[]) => UndeliverableError | SinkUnavailableError | undefined = () => undefined;
  /** Fails a batch of these topics with a transient error. */
  readonly failingTopics = new Set<string>();
  async write(batch: SinkMessage[]) {
    this.attempts++;
    if (this.failing || this.failingTopics.has((batch[0] as SinkMessage).topic))
      this.firstFailureAt ??= Date.now();
    if (this.failing) throw new Error("broker down");
    if (this.failingTopics.has((batch[0] as SinkMessage).topic)) throw new Error("leader not available");
    const refusal = this.refuse(batch);
    if (refusal) throw refusal;
    this.batches.push(batch);
  }
  async close() {}
}

const OPTIONS: DeliveryQueueOptions = {
  lingerMs: 5,
  batchBytes: 10_000,
  maxBatchBytes: 100_000,
  maxRecords: 100,
  maxBytes: 1_000_000,
  unhealthyAfterMs: 50,
  maxInFlight: 2,
  probeIntervalMs: 1000,
  writeTimeoutMs: 1000,
  retryBaseMs: 5,
  retryMaxMs: 20,
  unavailableRetryMs: 200,
};

function message(n: number): SinkMessage {
  return { topic: "t", key: "k", value: JSON.stringify({ n }), headers: {} };
}

function setup(options: Partial<DeliveryQueueOptions> = {}, log = pino({ level: "silent" })) {
  const writer = new ControlledWriter();
  const health = new HealthState();
  const metrics = createMetrics("test", "0");
  const queue = new DeliveryQueue(writer, { ...OPTIONS, ...options }, metrics, health, log);
  return { writer, health, queue, metrics };
}

/** The queue's one error channel: a refusal is a rejected promise with a 503 GatewayError, never a throw. */
async function expectRefused(enqueue: () => Promise<void>, code: ErrorCode): Promise<void> {
  let promise: Promise<void> | undefined;
  expect(() => {
    promise = enqueue();
  }).not.toThrow();
  const error = await (promise as Promise<void>).then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(GatewayError);
  expect((error as GatewayError).code).toBe(code);
  expect((error as GatewayError).status).toBe(503);
}

describe("DeliveryQueue", () => {
  test("batches records of concurrent requests and acknowledges each request", async () => {
    const { writer, queue } = setup();
    await Promise.all([
      queue.enqueue([message(1), message(2)], "acknowledged", "acme"),
      queue.enqueue([message(3)], "acknowledged", "acme"),
    ]);
    expect(writer.batches.flat().map((m) => JSON.parse(m.value).n)).toEqual([1, 2, 3]);
    expect(writer.batches.length).toBe(1);
    expect(queue.depth.records).toBe(0);
  });

  test("gateway_events_produced_total counts the ingest topic's records, not fan-out copies, publishes or dead letters", async () => {
    const { writer, queue, metrics } = setup({ eventsTopic: "t", deadLetterTopic: "dlq" });
    const on = (topic: string, n: number): SinkMessage => ({ ...message(n), topic });
    await Promise.all([
      queue.enqueue([on("t", 1), on("t", 2), on("t", 3)], "acknowledged", "acme"),
      queue.enqueue([on("fanout", 1), on("fanout", 2)], "acknowledged", "acme"),
    ]);
    expect(writer.batches.flat().length).toBe(5);
    const produced = (await metrics.eventsProduced.get()).values[0]?.value;
    expect(produced).toBe(3);
    // Every batch is still in the batch-size histogram, whatever its topic.
    const batches = (await metrics.produceBatchRecords.get()).values;
    expect(batches.find((value) => value.metricName === "gateway_kafka_batch_records_sum")?.value).toBe(5);
  });

  test("splits by batch bytes", async () => {
    const { writer, queue } = setup({ batchBytes: 200 });
    await queue.enqueue(
      Array.from({ length: 10 }, (_, i) => message(i)),
      "acknowledged",
      "acme",
    );
    expect(writer.batches.length).toBeGreaterThan(1);
    expect(writer.batches.flat().length).toBe(10);
  });

  test("no batch holds more than maxBatchBytes, whatever batchBytes says", async () => {
    const { writer, queue } = setup({ batchBytes: 50_000, maxBatchBytes: 1000 });
    const messages = Array.from({ length: 20 }, (_, i) => ({ ...message(i), value: "x".repeat(250) }));
    await queue.enqueue(messages, "acknowledged", "acme");
    expect(writer.batches.flat().length).toBe(20);
    for (const batch of writer.batches) {
      expect(batch.reduce((sum, each) => sum + recordBytes(each), 0)).toBeLessThanOrEqual(1000);
    }
  });

  test("a record that can never fit a batch is refused with a 413, and fits() says so up front", async () => {
    const { queue, writer } = setup({ maxBatchBytes: 1000 });
    const huge = { ...message(1), value: "é".repeat(600) };
    expect(queue.maxRecordBytes).toBe(1000);
    expect(queue.fits(message(1))).toBe(true);
    expect(queue.fits(huge)).toBe(false);
    // ASCII near the limit: the loose bound (3 bytes per character) is over it, the real size is not.
    expect(queue.fits({ ...message(1), value: "a".repeat(800) })).toBe(true);
    expect(queue.fits({ ...message(1), value: "a".repeat(1000) })).toBe(false);
    const error = await queue
      .enqueue([message(1), huge], "queued", "acme")
      .catch((reason: unknown) => reason);
    expect(error).toBeInstanceOf(GatewayError);
    expect((error as GatewayError).status).toBe(413);
    expect(queue.depth.records).toBe(0);
    expect(writer.attempts).toBe(0);
  });

  test("refuses with a 503 rejection past the record bound instead of growing", async () => {
    const { queue } = setup({ maxRecords: 3 });
    queue.enqueue([message(1), message(2)], "acknowledged", "acme").catch(() => {});
    await expectRefused(() => queue.enqueue([message(3), message(4)], "queued", "acme"), "overloaded");
  });

  test('"queued" resolves once accepted, "acknowledged" only once the sink acknowledged', async () => {
    const { writer, queue } = setup();
    writer.failing = true;
    let acknowledged = false;
    queue.enqueue([message(1)], "acknowledged", "acme").then(() => {
      acknowledged = true;
    });
    await queue.enqueue([message(2)], "queued", "acme");
    await Bun.sleep(50);
    expect(acknowledged).toBe(false);
    writer.failing = false;
    await Bun.sleep(100);
    expect(acknowledged).toBe(true);
  });

  test("retries a failed batch until it succeeds, turns unhealthy, and recovers", async () => {
    const { writer, health, queue } = setup();
    writer.failing = true;
    const acknowledged = queue.enqueue([message(1)], "acknowledged", "acme");
    // Waited for: the grace (50 ms) runs from the first failure, which a loaded machine can delay past a
    // fixed 120 ms (the first write then fails at the same turn the test looks).
    await waitUntil(() => health.has(UNHEALTHY_REASON), "unhealthy past the grace");
    await expectRefused(() => queue.enqueue([message(2)], "acknowledged", "acme"), "unavailable");
    writer.failing = false;
    await acknowledged;
    expect(writer.attempts).toBeGreaterThan(2);
    expect(writer.batches.flat().map((m) => JSON.parse(m.value).n)).toEqual([1]);
    expect(health.ready).toBe(true);
  });

  test("a new instance is out of service until the sink answered once: kafka_connecting, not the outage grace", async () => {
    const { health, queue } = setup({ probeIntervalMs: 0, unhealthyAfterMs: 60_000 });
    let brokerUp = false;
    queue.awaitFirstContact();
    queue.noteFailure(new Error("connect ECONNREFUSED"));
    queue.startMonitor(async () => {
      if (!brokerUp) throw new Error("broker down");
    });
    // Far inside the 60 s grace, and never reached: not ready.
    await Bun.sleep(300);
    expect(health.ready).toBe(false);
    expect(health.list()).toEqual([CONNECTING_REASON]);
    brokerUp = true;
    await waitUntil(() => health.ready, "ready once the probe is answered");
    expect(health.list()).toEqual([]);
    // Once reached, a later outage gets the grace again.
    brokerUp = false;
    await Bun.sleep(300);
    expect(health.ready).toBe(true);
    await queue.close(100);
  });

  test("never reached past the grace: the reason becomes kafka_unreachable alone, until the sink answers", async () => {
    const { health, queue } = setup({ probeIntervalMs: 0, unhealthyAfterMs: 50 });
    let brokerUp = false;
    queue.awaitFirstContact();
    queue.noteFailure(new Error("connect ECONNREFUSED"));
    queue.startMonitor(async () => {
      if (!brokerUp) throw new Error("broker down");
    });
    await waitUntil(() => health.has(UNHEALTHY_REASON), "unhealthy past the grace");
    expect(health.list()).toEqual([UNHEALTHY_REASON]);
    brokerUp = true;
    await waitUntil(() => health.ready, "ready once the probe is answered");
    await queue.close(100);
  });

  test("the first acknowledged write counts as contact", async () => {
    const { health, queue } = setup();
    queue.awaitFirstContact();
    await queue.enqueue([message(1)], "acknowledged", "acme");
    expect(health.ready).toBe(true);
    await queue.close(100);
  });

  test("a sink reached at start is ready at once, without traffic", () => {
    const { health, queue } = setup();
    queue.awaitFirstContact();
    expect(health.list()).toEqual([CONNECTING_REASON]);
    queue.noteReachable();
    expect(health.ready).toBe(true);
  });

  test("gateway_kafka_up is 0 from the first failed write until an answer, not only once /health gave up", async () => {
    const { writer, health, queue, metrics } = setup({ unhealthyAfterMs: 60_000 });
    const up = async () => (await metrics.kafkaUp.get()).values[0]?.value;
    expect(await up()).toBe(1);
    writer.failing = true;
    const acknowledged = queue.enqueue([message(1)], "acknowledged", "acme");
    await waitUntil(() => writer.attempts > 0, "a failed write");
    // Well inside the 60 s grace: /health still serves, the metric already says the sink does not answer.
    expect(await up()).toBe(0);
    expect(health.ready).toBe(true);
    writer.failing = false;
    await acknowledged;
    expect(await up()).toBe(1);
    await queue.close(100);
  });

  test("the unhealthy grace counts from when the unanswered write was sent, not from its timeout, and from no earlier than the sink's last answer", async () => {
    // A frozen broker: writes of record 1 are never answered; record 2's write is, 380 ms after it is sent.
    // Record 2's answer (~400 ms) falls halfway into the grace before record 1's timeout (700 ms): a loaded
    // machine may delay either by up to 300 ms. (At 170 ms against 400 and 300, a timeout seen 70 ms
    // late was past the grace counted from the answer.)
    class FrozenWriter extends ControlledWriter {
      override async write(batch: SinkMessage[]) {
        this.attempts++;
        if (JSON.parse((batch[0] as SinkMessage).value).n === 1) return new Promise<void>(() => {});
        await Bun.sleep(380);
        this.batches.push(batch);
      }
    }
    const frozen = () => {
      const health = new HealthState();
      const metrics = createMetrics("test", "0");
      const options = { ...OPTIONS, writeTimeoutMs: 700, unhealthyAfterMs: 600, lingerMs: 0 };
      const queue = new DeliveryQueue(
        new FrozenWriter(),
        options,
        metrics,
        health,
        pino({ level: "silent" }),
      );
      const failureSeen = () =>
        waitUntil(
          async () => (await metrics.kafkaUp.get()).values[0]?.value === 0,
          "the write's timeout",
          5000,
          5,
        );
      return { health, queue, failureSeen };
    };

    // Sent at 0, seen failing at its timeout (700 ms): already past the 600 ms grace, so /health is 503 at once.
    const alone = frozen();
    void alone.queue.enqueue([message(1)], "queued", "acme");
    await alone.failureSeen();
    expect(alone.health.list()).toContain(UNHEALTHY_REASON);
    await expect(alone.queue.close(0)).rejects.toThrow("undelivered");

    // Another write, sent later, is answered at ~400 ms: the sink has failed since then only (300 ms).
    const answered = frozen();
    void answered.queue.enqueue([message(1)], "queued", "acme");
    await Bun.sleep(20);
    await answered.queue.enqueue([message(2)], "acknowledged", "acme");
    await answered.failureSeen();
    expect(answered.health.list()).not.toContain(UNHEALTHY_REASON);
    await expect(answered.queue.close(0)).rejects.toThrow("undelivered");
  });

  test("an error the sink answered after a slow attempt starts the unhealthy grace when it is seen, not when the write was sent", async () => {
    // A leader election through the client's retries: the write fails, answered, 400 ms after it was sent.
    class SlowlyFailingWriter extends ControlledWriter {
      override async write() {
        this.attempts++;
        await Bun.sleep(400);
        throw new Error("NOT_LEADER_OR_FOLLOWER");
      }
    }
    const health = new HealthState();
    const metrics = createMetrics("test", "0");
    const options = { ...OPTIONS, writeTimeoutMs: 5000, unhealthyAfterMs: 300, lingerMs: 0 };
    const queue = new DeliveryQueue(
      new SlowlyFailingWriter(),
      options,
      metrics,
      health,
      pino({ level: "silent" }),
    );
    void queue.enqueue([message(1)], "queued", "acme");
    await waitUntil(async () => (await metrics.kafkaUp.get()).values[0]?.value === 0, "the failure", 5000, 5);
    // Seen failing just now: the 300 ms grace has not passed (dated from the send, it had, by 100 ms).
    expect(health.list()).not.toContain(UNHEALTHY_REASON);
    await expect(queue.close(0)).rejects.toThrow("undelivered");
  });

  test("a write the sink's own timeout ended unanswered (Kafka's connect timeout, shorter than the write timeout) starts the grace when it was sent", async () => {
    class ConnectTimeoutWriter extends ControlledWriter {
      override async write() {
        this.attempts++;
        await Bun.sleep(400);
        throw new SinkNoAnswerError("Kafka did not answer: Connection to 10.0.0.1:9092 timed out.");
      }
    }
    const health = new HealthState();
    const metrics = createMetrics("test", "0");
    const options = { ...OPTIONS, writeTimeoutMs: 5000, unhealthyAfterMs: 300, lingerMs: 0 };
    const queue = new DeliveryQueue(
      new ConnectTimeoutWriter(),
      options,
      metrics,
      health,
      pino({ level: "silent" }),
    );
    void queue.enqueue([message(1)], "queued", "acme");
    await waitUntil(async () => (await metrics.kafkaUp.get()).values[0]?.value === 0, "the failure", 5000, 5);
    // Failing since the send, 400 ms ago: past the 300 ms grace at once.
    expect(health.list()).toContain(UNHEALTHY_REASON);
    await expect(queue.close(0)).rejects.toThrow("undelivered");
  });

  test("gateway_kafka_up is 0 until a sink awaiting its first contact answers", async () => {
    const { queue, metrics } = setup();
    const up = async () => (await metrics.kafkaUp.get()).values[0]?.value;
    queue.awaitFirstContact();
    expect(await up()).toBe(0);
    queue.noteReachable();
    expect(await up()).toBe(1);
  });

  test("records queued while only the probe saw the outage leave once the probe sees recovery", async () => {
    const { writer, queue } = setup({ probeIntervalMs: 0, unhealthyAfterMs: 10_000 });
    let brokerUp = false;
    queue.startMonitor(async () => {
      if (!brokerUp) throw new Error("broker down");
    });
    await Bun.sleep(300);
    const acknowledged = queue.enqueue([message(1)], "acknowledged", "acme");
    brokerUp = true;
    const settled = await Promise.race([
      acknowledged.then(() => "acknowledged"),
      Bun.sleep(1000).then(() => "stalled"),
    ]);
    expect(settled).toBe("acknowledged");
    expect(writer.batches.flat().length).toBe(1);
    await queue.close(100);
  });

  test("with no linger time, the records queued in one turn leave together, without waiting for a timer", async () => {
    const { writer, queue } = setup({ lingerMs: 0 });
    const acknowledged = [
      queue.enqueue([message(1)], "acknowledged", "acme"),
      queue.enqueue([message(2)], "acknowledged", "acme"),
    ];
    expect(writer.attempts).toBe(0);
    await new Promise((resolve) => setImmediate(resolve));
    expect(writer.batches).toEqual([[message(1), message(2)]]);
    await Promise.all(acknowledged);
    await queue.close(100);
  });

  test("a backlog of thousands of records leaves in order, each record exactly once", async () => {
    // Past 4096 records taken, a writer's queue compacts its array: no record may be lost or repeated there.
    const { writer, queue } = setup({ maxRecords: 20_000 });
    const count = 10_000;
    await queue.enqueue(
      Array.from({ length: count }, (_, i) => message(i)),
      "queued",
      "acme",
    );
    // A record lost there is never acknowledged: the flush says how many are left.
    await queue.close(3000);
    expect(writer.batches.length).toBeGreaterThan(20);
    expect(writer.batches.flat().map((m) => JSON.parse(m.value).n)).toEqual(
      Array.from({ length: count }, (_, i) => i),
    );
    expect(queue.depth).toEqual({ records: 0, bytes: 0 });
  });

  test("close flushes what is queued and then refuses", async () => {
    const { writer, queue } = setup({ lingerMs: 10_000 });
    const acknowledged = queue.enqueue([message(1)], "acknowledged", "acme");
    await queue.close(1000);
    await acknowledged;
    expect(writer.batches.flat().length).toBe(1);
    await expectRefused(() => queue.enqueue([message(2)], "queued", "acme"), "draining");
  });

  test("close retries a failing sink until its deadline, often, and flushes once it is back", async () => {
    const { writer, queue } = setup({ retryBaseMs: 400, retryMaxMs: 3000 });
    writer.failing = true;
    const acknowledged = queue.enqueue([message(1)], "acknowledged", "acme");
    setTimeout(() => {
      writer.failing = false;
    }, 700);
    await queue.close(1500);
    expect(writer.batches.flat().length).toBe(1);
    await acknowledged;
  });

  test("close rejects, saying how many, when records are left undelivered at the deadline", async () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: "error" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
    const { writer, queue } = setup({}, log);
    writer.failing = true;
    queue.enqueue([message(1), message(2)], "queued", "acme");
    const { records, bytes } = queue.undelivered;
    expect(records).toBe(2);
    expect(bytes).toBeGreaterThan(0);
    await expect(queue.close(200)).rejects.toThrow("2 records undelivered");
    // The fields the lifecycle logs too when a second signal or the hard deadline cuts the drain short.
    expect(lines.find((line) => line.msg === "drain deadline passed with records undelivered")).toMatchObject(
      {
        lost: 2,
        lostBytes: bytes,
      },
    );
    // Past the deadline it stops retrying instead of reopening connections while the process exits.
    const attempts = writer.attempts;
    await Bun.sleep(100);
    expect(writer.attempts).toBe(attempts);
  });

  describe("records the sink refuses for good", () => {
    const delivered = (writer: ControlledWriter) =>
      writer.batches.flat().map((m) => (JSON.parse(m.value) as { n: number }).n);
    const undeliverable = async (metrics: ReturnType<typeof setup>["metrics"], reason: string) =>
      (await metrics.eventsUndeliverable.get()).values.find((value) => value.labels.reason === reason)
        ?.value ?? 0;

    test("a batch too large as a whole is split in halves until every part is delivered", async () => {
      const { writer, queue, health } = setup();
      writer.refuse = (batch) =>
        batch.length > 3 ? new UndeliverableError("too_large", "MESSAGE_TOO_LARGE") : undefined;
      await queue.enqueue(
        Array.from({ length: 10 }, (_, i) => message(i)),
        "acknowledged",
        "acme",
      );
      expect(delivered(writer).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(writer.batches.every((batch) => batch.length <= 3)).toBe(true);
      expect(health.ready).toBe(true);
    });

    test("the one record at fault is dropped and counted; its request is refused once its other records are written, naming that one (a 413 as a whole); the owner is told its topic", async () => {
      const tooLarge: string[] = [];
      const { writer, queue, health, metrics } = setup({ onTooLarge: (topic) => tooLarge.push(topic) });
      writer.refuse = (batch) =>
        batch.some((m) => JSON.parse(m.value).n === 6)
          ? new UndeliverableError("too_large", "MESSAGE_TOO_LARGE")
          : undefined;
      const first = queue.enqueue(
        Array.from({ length: 10 }, (_, i) => message(i)),
        "acknowledged",
        "acme",
      );
      const second = queue.enqueue([message(10), message(11)], "acknowledged", "acme");
      const error = await first.catch((reason: unknown) => reason);
      // Not before the request's other records are written: its answer says which were not.
      expect(
        delivered(writer)
          .filter((n) => n < 10)
          .sort((a, b) => a - b),
      ).toEqual([0, 1, 2, 3, 4, 5, 7, 8, 9]);
      expect(error).toBeInstanceOf(RecordsRefused);
      expect((error as RecordsRefused).status).toBe(413);
      expect((error as RecordsRefused).records.map(({ position, error }) => [position, error.code])).toEqual([
        [6, "record_too_large"],
      ]);
      await second;
      expect(delivered(writer).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11]);
      expect(await undeliverable(metrics, "too_large")).toBe(1);
      // So that it reads the topic's limit again (a limit lowered while running).
      expect(tooLarge).toEqual(["t"]);
      expect(queue.depth.records).toBe(0);
      expect(health.ready).toBe(true);
      await queue.enqueue([message(12)], "acknowledged", "acme");
    });

    test("a topic refusing every record: each request gets its 413, the log one line for them all", async () => {
      const lines: Array<Record<string, unknown>> = [];
      const log = pino({ level: "warn" }, { write: (line: string) => lines.push(JSON.parse(line)) });
      const { writer, queue, metrics } = setup({}, log);
      writer.refuse = () => new UndeliverableError("too_large", "MESSAGE_TOO_LARGE");
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, n) =>
          queue.enqueue([message(n)], "acknowledged", "acme").catch((reason: GatewayError) => reason.status),
        ),
      );
      expect(answers).toEqual(Array.from({ length: 20 }, () => 413));
      expect(await undeliverable(metrics, "too_large")).toBe(20);
      const refusals = lines.filter((line) => String(line.msg).startsWith("record refused by the sink"));
      expect(refusals).toEqual([
        expect.objectContaining({ code: "MESSAGE_TOO_LARGE", topic: "t", records: 1 }),
      ]);
    });

    test("with a dead-letter topic the record at fault goes there, and a refused dead letter is dropped", async () => {
      const { writer, queue, metrics } = setup({ deadLetterTopic: "dlq" });
      writer.refuse = (batch) =>
        batch.some((m) => m.topic === "t" && JSON.parse(m.value).n === 1)
          ? new UndeliverableError("invalid_record", "INVALID_RECORD")
          : undefined;
      const bad = { ...message(1), headers: { tenant: "acme", "content-type": "application/json" } };
      const error = await queue
        .enqueue([message(0), bad], "acknowledged", "acme")
        .catch((reason: unknown) => reason);
      expect((error as GatewayError).status).toBe(422);
      await waitUntil(() => writer.batches.flat().some((m) => m.topic === "dlq"), "the dead letter written");
      const letters = writer.batches.flat().filter((m) => m.topic === "dlq");
      expect(letters.length).toBe(1);
      const letter = JSON.parse((letters[0] as SinkMessage).value);
      expect(letter).toMatchObject({ tenant: "acme", topic: "t", record: { n: 1 } });
      expect(letter.reason).toContain("INVALID_RECORD");
      expect(await undeliverable(metrics, "invalid_record")).toBe(1);

      // A dead letter the sink refuses too is dropped, not dead-lettered again.
      writer.refuse = (batch) =>
        batch.some((m) => m.topic === "dlq" || JSON.parse(m.value).n === 2)
          ? new UndeliverableError("invalid_record", "INVALID_RECORD")
          : undefined;
      await queue.enqueue([message(2)], "queued", "acme");
      await waitUntil(
        async () => (await undeliverable(metrics, "invalid_record")) === 3,
        "both refusals counted",
      );
      expect(writer.batches.flat().filter((m) => m.topic === "dlq").length).toBe(1);
      expect(queue.depth.records).toBe(0);
    });

    test("a write the sink is not authorized for answers 503, not a client error", async () => {
      const { writer, queue } = setup();
      writer.refuse = () => new SinkUnavailableError("TOPIC_AUTHORIZATION_FAILED");
      const error = await queue
        .enqueue([message(1)], "acknowledged", "acme")
        .catch((reason: unknown) => reason);
      expect((error as GatewayError).status).toBe(503);
      expect(queue.depth.records).toBe(0);
    });
  });

  describe("faults stay in their topic", () => {
    const onTopic = (topic: string, n: number): SinkMessage => ({ ...message(n), topic });
    const deliveredTo = (writer: ControlledWriter, topic: string) =>
      writer.batches
        .flat()
        .filter((m) => m.topic === topic)
        .map((m) => (JSON.parse(m.value) as { n: number }).n);
    const counter = async (metric: {
      get(): Promise<{ values: Array<{ labels: object; value: number }> }>;
    }) => (await metric.get()).values.reduce((sum, value) => sum + value.value, 0);

    test("a topic whose writes fail and are retried never holds another topic's records", async () => {
      const { writer, queue } = setup({ unhealthyAfterMs: 10_000 });
      writer.failingTopics.add("a");
      const waitingOnA = queue.enqueue([onTopic("a", 1)], "acknowledged", "acme");
      await waitUntil(() => writer.attempts >= 2, "topic a retried");
      await queue.enqueue([onTopic("b", 2)], "acknowledged", "acme");
      expect(deliveredTo(writer, "b")).toEqual([2]);
      writer.failingTopics.clear();
      await waitingOnA;
      expect(deliveredTo(writer, "a")).toEqual([1]);
    });

    test("only the failing topic refuses new records once its failures last unhealthyAfterMs", async () => {
      const { writer, queue, health } = setup();
      writer.failingTopics.add("a");
      queue.enqueue([onTopic("a", 1)], "queued", "acme");
      // The sink still answers for other topics: it is not unreachable.
      const keepAnswering = setInterval(
        () => queue.enqueue([onTopic("b", 0)], "queued", "acme").catch(() => {}),
        10,
      );
      // Past the grace from the topic's first failure, not a fixed 120 ms from the start: a loaded machine
      // can delay that first write, and a record taken meanwhile waits for good on the failing topic.
      await waitUntil(
        () =>
          writer.firstFailureAt !== undefined &&
          Date.now() - writer.firstFailureAt > 2 * OPTIONS.unhealthyAfterMs,
        "topic a failing past the grace",
      );
      await expectRefused(() => queue.enqueue([onTopic("a", 2)], "acknowledged", "acme"), "unavailable");
      await queue.enqueue([onTopic("b", 3)], "acknowledged", "acme");
      clearInterval(keepAnswering);
      expect(health.ready).toBe(true);
      writer.failingTopics.clear();
      await queue.close(1000);
      expect(deliveredTo(writer, "a")).toEqual([1]);
    });

    test("one topic takes at most 9/10 of the queue's bounds, leaving room for the others", async () => {
      const { writer, queue } = setup({ maxRecords: 20 });
      writer.failingTopics.add("a");
      await queue.enqueue(
        Array.from({ length: 18 }, (_, n) => onTopic("a", n)),
        "queued",
        "acme",
      );
      await expectRefused(() => queue.enqueue([onTopic("a", 18)], "queued", "acme"), "overloaded");
      await queue.enqueue([onTopic("b", 19), onTopic("b", 20)], "acknowledged", "acme");
      writer.failingTopics.clear();
      await queue.close(1000);
    });

    test("a topic refused as a whole: waiting requests get 503 at once, answered records wait for it, the others flow, and it resumes by itself", async () => {
      const { writer, queue, health, metrics } = setup();
      let refused = true;
      writer.refuse = (batch) =>
        refused && batch[0]?.topic === "a"
          ? new SinkUnavailableError("TOPIC_AUTHORIZATION_FAILED")
          : undefined;
      const queued = queue.enqueue([onTopic("a", 1)], "queued", "acme");
      const waiting = queue.enqueue([onTopic("a", 2)], "acknowledged", "acme");
      await queued;
      const error = (await waiting.catch((reason: unknown) => reason)) as GatewayError;
      expect(error.code).toBe("unavailable");
      expect(Number(error.headers["retry-after"])).toBeGreaterThan(0);
      // One write found out; no split into single records, no write per record.
      const attempts = writer.attempts;
      expect(attempts).toBeLessThanOrEqual(2);

      await expectRefused(() => queue.enqueue([onTopic("a", 3)], "acknowledged", "acme"), "unavailable");
      await queue.enqueue([onTopic("b", 4)], "acknowledged", "acme");
      expect(health.ready).toBe(true);
      expect(health.degraded()).toEqual(["kafka_topic_unavailable:a"]);
      expect((await metrics.topicAvailable.get()).values.find((v) => v.labels.topic === "a")?.value).toBe(0);

      // Tried again after unavailableRetryMs, and again while it stays refused.
      await waitUntil(() => writer.attempts > attempts + 1, "topic a tried twice more");
      expect(deliveredTo(writer, "a")).toEqual([]);
      refused = false;
      await waitUntil(() => deliveredTo(writer, "a").length > 0, "topic a taking records again");
      expect(deliveredTo(writer, "a")).toEqual([1]);
      expect(health.degraded()).toEqual([]);
      await queue.enqueue([onTopic("a", 5)], "acknowledged", "acme");
      expect(queue.depth.records).toBe(0);
    });

    test("a topic refused as a whole after part of a waiting request was written: the request is answered once all its records are settled, naming the unwritten ones (503 each), never a 503 for records written", async () => {
      const { writer, queue } = setup({ batchBytes: 200, maxInFlight: 1 });
      // The first batch is written, then the topic is refused: the request's later batches are not.
      writer.refuse = () =>
        writer.batches.length > 0 ? new SinkUnavailableError("TOPIC_AUTHORIZATION_FAILED") : undefined;
      const error = await queue
        .enqueue(
          Array.from({ length: 10 }, (_, n) => onTopic("a", n)),
          "acknowledged",
          "acme",
        )
        .catch((reason: unknown) => reason);
      const written = deliveredTo(writer, "a");
      expect(written.length).toBeGreaterThan(0);
      expect(written.length).toBeLessThan(10);
      expect(error).toBeInstanceOf(RecordsRefused);
      const unwritten = (error as RecordsRefused).records;
      expect(unwritten.map((record) => record.position).sort((a, b) => a - b)).toEqual(
        Array.from({ length: 10 }, (_, n) => n).filter((n) => !written.includes(n)),
      );
      for (const { error } of unwritten) {
        expect([error.code, error.status]).toEqual(["unavailable", 503]);
        expect(Number(error.headers["retry-after"])).toBeGreaterThan(0);
      }
      // None written: the request is refused as a whole, as before (503 with Retry-After).
      writer.refuse = () => new SinkUnavailableError("TOPIC_AUTHORIZATION_FAILED");
      await expectRefused(
        () => queue.enqueue([onTopic("b", 1), onTopic("b", 2)], "acknowledged", "acme"),
        "unavailable",
      );
      expect(queue.depth.records).toBe(0);
    });

    test("the drain tries a held topic again at once: records answered 202 while it was refused are flushed", async () => {
      const { writer, queue, health } = setup({ unavailableRetryMs: 60_000 });
      let refused = true;
      writer.refuse = (batch) =>
        refused && batch[0]?.topic === "a"
          ? new SinkUnavailableError("UNKNOWN_TOPIC_OR_PARTITION")
          : undefined;
      await queue.enqueue([onTopic("a", 1), onTopic("a", 2)], "queued", "acme");
      await waitUntil(() => health.degraded().length > 0, "topic a held");
      refused = false;
      // Held for a minute, past the drain's one second: only the drain's own try delivers them.
      await queue.close(1000);
      expect(deliveredTo(writer, "a")).toEqual([1, 2]);
    });

    test("the embedded log's refusal (full disk) is this instance's own: /health turns 503", async () => {
      const { writer, queue, health } = setup();
      Object.assign(writer, { kind: "local-log" });
      writer.refuse = () => new SinkUnavailableError("ENOSPC");
      const error = (await queue
        .enqueue([message(1)], "acknowledged", "acme")
        .catch((r: unknown) => r)) as GatewayError;
      expect(error.code).toBe("unavailable");
      expect(error.message).toContain("ENOSPC");
      expect(health.list()).toEqual(["local_log_unwritable"]);
      writer.refuse = () => undefined;
      // Refused up front until the retry time; then the next request is the one that tries again.
      await waitUntil(
        () =>
          queue.enqueue([message(2)], "acknowledged", "acme").then(
            () => true,
            () => false,
          ),
        "the log taking records again",
      );
      expect(health.ready).toBe(true);
    });

    test("dead letters the sink keeps failing never hold data, and are dropped and counted past their share", async () => {
      const { writer, queue, metrics } = setup({
        deadLetterTopic: "dlq",
        maxRecords: 64,
        unhealthyAfterMs: 10_000,
      });
      writer.failingTopics.add("dlq");
      writer.refuse = (batch) =>
        batch.some((m) => m.topic === "t" && JSON.parse(m.value).n % 2 === 1)
          ? new UndeliverableError("invalid_record", "INVALID_RECORD")
          : undefined;
      // Ten records refused for good: ten dead letters for a lane of 64/16 = 4.
      const outcomes = await Promise.allSettled(
        Array.from({ length: 20 }, (_, n) => queue.enqueue([message(n)], "acknowledged", "acme")),
      );
      expect(outcomes.filter((outcome) => outcome.status === "fulfilled").length).toBe(10);
      expect(deliveredTo(writer, "t").length).toBe(10);
      expect(await counter(metrics.deadLettersDropped)).toBe(6);
      // Data keeps flowing while the dead letters are retried.
      await queue.enqueue([message(100)], "acknowledged", "acme");
      // The drain does not wait for dead letters the sink cannot take (its deadline is past the test's), nor fail for them.
      await queue.close(60_000);
      expect(await counter(metrics.deadLettersDropped)).toBe(10);
    });

    test("a dead-letter topic refused as a whole drops its letters, counted, and data is never refused for it", async () => {
      // Held for a minute once refused, not OPTIONS' 200 ms, which a loaded machine can let pass before
      // the test queues its next dead letter (taken then, as the hold is over).
      const { writer, queue, metrics, health } = setup({
        deadLetterTopic: "dlq",
        unavailableRetryMs: 60_000,
      });
      writer.refuse = (batch) => {
        if (batch[0]?.topic === "dlq") return new SinkUnavailableError("UNKNOWN_TOPIC_OR_PARTITION");
        return batch.some((m) => JSON.parse(m.value).n === 1)
          ? new UndeliverableError("invalid_record", "INVALID_RECORD")
          : undefined;
      };
      await queue.enqueue([message(1)], "acknowledged", "acme").catch(() => {});
      await waitUntil(
        async () => (await counter(metrics.deadLettersDropped)) === 1,
        "the dead letter dropped",
      );
      expect(health.degraded()).toEqual(["kafka_topic_unavailable:dlq"]);
      // Dead letters queued by the caller while it is refused are dropped up front.
      await expectRefused(
        () => queue.enqueue([{ ...message(2), topic: "dlq" }], "queued", "acme"),
        "unavailable",
      );
      expect(await counter(metrics.deadLettersDropped)).toBe(2);
      await queue.enqueue([message(3), message(4)], "acknowledged", "acme");
      expect(deliveredTo(writer, "t")).toEqual([3, 4]);
      await queue.close(1000);
    });
  });
});

/** A topic with two writers (keys "a…" to writer 0, others to 1) whose writes the test lets through. */
class TwoWriters implements SinkWriter {
  readonly kind = "kafka";
  readonly writersPerTopic = 2;
  /** Per writer, the `n`s of its acknowledged records in the order they were written. */
  readonly written: number[][] = [[], []];
  readonly inFlight = [0, 0];
  readonly mostInFlight = [0, 0];
  /** Per writer: while set, its writes wait for this promise. */
  readonly gates: Array<Promise<void> | undefined> = [undefined, undefined];
  /** Per writer: its writes fail with a transient error, or with this refusal. */
  readonly failing: Array<Error | undefined> = [undefined, undefined];
  readonly resets: number[] = [];

  writerOf(message: SinkMessage): number {
    return message.key.startsWith("a") ? 0 : 1;
  }

  async write(batch: SinkMessage[], writer = 0) {
    for (const each of batch) expect(this.writerOf(each)).toBe(writer);
    this.inFlight[writer] = (this.inFlight[writer] as number) + 1;
    this.mostInFlight[writer] = Math.max(
      this.mostInFlight[writer] as number,
      this.inFlight[writer] as number,
    );
    try {
      await this.gates[writer];
      const failure = this.failing[writer];
      if (failure) throw failure;
      this.written[writer]?.push(...batch.map((each) => JSON.parse(each.value).n as number));
    } finally {
      this.inFlight[writer] = (this.inFlight[writer] as number) - 1;
    }
  }

  reset(_topic: string, writer = 0) {
    this.resets.push(writer);
  }

  async close() {}
}

function keyed(key: string, n: number): SinkMessage {
  return { topic: "t", key, value: JSON.stringify({ n }), headers: {} };
}

function gate(): { opened: Promise<void>; open(): void } {
  let open = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

describe("DeliveryQueue, tenants' shares", () => {
  const three = (from: number) => [message(from), message(from + 1), message(from + 2)];

  test("a tenant alone fills the whole queue: nobody else asks", async () => {
    const { writer, queue } = setup({ maxRecords: 20, unhealthyAfterMs: 60_000 });
    writer.failing = true;
    for (let n = 0; n < 18; n += 3) await queue.enqueue(three(n), "queued", "acme");
    expect(queue.depth.records).toBe(18);
    await queue.close(10).catch(() => {});
  });

  test("past half full, a tenant over its share gets 503 while another tenant's records get in; delivered records free the share", async () => {
    const { writer, queue, metrics } = setup({ maxRecords: 20, unhealthyAfterMs: 60_000 });
    writer.failing = true;
    await queue.enqueue(three(0), "queued", "noisy");
    await queue.enqueue([message(100)], "queued", "quiet");
    await queue.enqueue(three(3), "queued", "noisy");
    await queue.enqueue(three(6), "queued", "noisy");
    // 10 of 20 queued, the noisy tenant holding 9: 3 more would put it past 20 / 2 tenants, in a queue past half.
    await expectRefused(() => queue.enqueue(three(9), "queued", "noisy"), "overloaded");
    expect((await metrics.overloaded.get()).values[0]?.value).toBe(1);
    await queue.enqueue(three(101), "queued", "quiet");
    await queue.enqueue(three(104), "queued", "quiet");
    expect(queue.depth.records).toBe(16);
    writer.failing = false;
    await waitUntil(() => queue.depth.records === 0, "the queue drained");
    await queue.enqueue(three(9), "queued", "noisy");
    await queue.close(1000);
  });

  test("a tenant holding nothing gets a request in even when it is larger than its share", async () => {
    const { writer, queue } = setup({ maxRecords: 20, unhealthyAfterMs: 60_000 });
    writer.failing = true;
    await queue.enqueue([message(0)], "queued", "a");
    await queue.enqueue([message(1)], "queued", "b");
    await queue.enqueue([message(2)], "queued", "c");
    await queue.enqueue([message(3)], "queued", "d");
    // Four tenants sending: a share is 5 records; "e" holds nothing and sends 8 into a queue past half.
    await queue.enqueue(three(10).concat(three(13), [message(16), message(17)]), "queued", "e");
    await expectRefused(() => queue.enqueue([message(18)], "queued", "e"), "overloaded");
    await queue.close(10).catch(() => {});
  });

  test("every call names its tenant: one naming none is refused as a bug, never queued outside the shares", async () => {
    const { writer, queue } = setup({ maxRecords: 20, unhealthyAfterMs: 60_000 });
    writer.failing = true;
    await queue.enqueue(three(0), "queued", "a");
    await queue.enqueue(three(3), "queued", "b");
    // Once, records naming no tenant got in past every share: the type required none. Now neither does.
    for (const tenant of [undefined, ""]) {
      const refused = await queue
        .enqueue(three(6).concat(three(9)), "queued", tenant as unknown as string)
        .then(
          () => undefined,
          (error: unknown) => error,
        );
      expect(refused).toBeInstanceOf(Error);
      expect(refused).not.toBeInstanceOf(GatewayError);
      expect((refused as Error).message).toBe(NO_TENANT);
    }
    expect(queue.depth.records).toBe(6);
    await queue.close(10).catch(() => {});
  });

  test("a publish naming several tenants charges each its own records, not all to the first", async () => {
    const { writer, queue } = setup({ maxRecords: 20, unhealthyAfterMs: 60_000 });
    writer.failing = true;
    const bus = new KafkaFanoutBus(
      {} as never,
      "fanout",
      queue,
      pino({ level: "silent" }),
      new HealthState(),
    );
    const publish = (tenant: string, n: number): FanoutMessage => ({
      tenant,
      channel: "orders",
      dataJson: JSON.stringify({ n }),
      ts: 1,
    });
    await queue.enqueue([message(100)], "queued", "quiet");
    // One call: one of "quiet"'s, nine of "noisy"'s (it held nothing, so they all get in).
    // Still waiting for the sink at the end: never acknowledged.
    bus
      .publish([publish("quiet", 0), ...Array.from({ length: 9 }, (_, n) => publish("noisy", n + 1))])
      .catch(() => {});
    expect(queue.depth.records).toBe(11);
    // 11 of 20 queued: "noisy" holds its nine, and three more would put it past 20 / 2 tenants.
    await expectRefused(() => queue.enqueue(three(0), "queued", "noisy"), "overloaded");
    // "quiet" holds its two, not the ten the call carried: it still gets in.
    await queue.enqueue(three(3), "queued", "quiet");
    expect(queue.depth.records).toBe(14);
    await queue.close(10).catch(() => {});
  });

  const published = (n: number): SinkMessage => ({ ...message(n), topic: "fanout" });

  /**
   * With "quiet" holding one record, "noisy" publishes one record at a time
   * (waiting for the acknowledgement, as /v1/publish does) until the queue
   * refuses it for its share; answers the publishes it took.
   */
  async function fillWithPublishes(queue: DeliveryQueue): Promise<Promise<unknown>[]> {
    const taken: Promise<unknown>[] = [];
    // 20 / 2 tenants sending: 10 publishes, then 503 in a queue past half.
    for (let n = 0; n < 10; n++)
      taken.push(queue.enqueue([published(n)], "acknowledged", "noisy").catch((error: unknown) => error));
    await expectRefused(() => queue.enqueue([published(10)], "acknowledged", "noisy"), "overloaded");
    // None of the ten was refused: each is still waiting for the sink.
    expect(await Promise.race([Promise.any(taken), Bun.sleep(20).then(() => "waiting")])).toBe("waiting");
    return taken;
  }

  test("a tenant's publishes (fan-out topic, acknowledged) count in its share; delivered, they free it", async () => {
    const { writer, queue } = setup({ maxRecords: 20, unhealthyAfterMs: 60_000 });
    writer.failing = true;
    await queue.enqueue([message(100)], "queued", "quiet");
    const taken = await fillWithPublishes(queue);
    // The other tenant's records still get in (11 of 20 queued; the fan-out lane alone could take 18).
    await queue.enqueue(three(101), "queued", "quiet");
    await queue.enqueue(three(104), "queued", "quiet");
    writer.failing = false;
    expect(await Promise.all(taken)).toEqual(Array.from({ length: 10 }, () => undefined));
    await waitUntil(() => queue.depth.records === 0, "the queue drained");
    // Nothing held any more: the same share again.
    writer.failing = true;
    await queue.enqueue([message(107)], "queued", "quiet");
    await fillWithPublishes(queue);
    await queue.close(10).catch(() => {});
  });

  test("a tenant's publishes dropped with their held topic free its share", async () => {
    const { writer, queue } = setup({ maxRecords: 20, unhealthyAfterMs: 60_000, unavailableRetryMs: 60_000 });
    writer.failing = true;
    await queue.enqueue([message(100)], "queued", "quiet");
    const taken = await fillWithPublishes(queue);
    writer.failing = false;
    writer.refuse = (batch) =>
      batch[0]?.topic === "fanout" ? new SinkUnavailableError("TOPIC_AUTHORIZATION_FAILED") : undefined;
    const answers = await Promise.all(taken);
    expect(answers.map((answer) => (answer as GatewayError).code)).toEqual(
      Array.from({ length: 10 }, () => "unavailable"),
    );
    // The ten publishes left the queue: the tenant holds nothing and gets its whole share in another topic.
    await waitUntil(() => queue.depth.records === 0, "the queue emptied");
    writer.failing = true;
    await queue.enqueue([message(101)], "queued", "quiet");
    for (let n = 0; n < 10; n++) await queue.enqueue([message(n)], "queued", "noisy");
    await expectRefused(() => queue.enqueue([message(10)], "queued", "noisy"), "overloaded");
    await queue.close(10).catch(() => {});
  });

  test("the dead letter of a tenant's record the sink refuses counts in its share until it leaves", async () => {
    const { writer, queue } = setup({ maxRecords: 32, unhealthyAfterMs: 60_000, deadLetterTopic: "dlq" });
    const waiting = (n: number): SinkMessage => ({ ...message(n), topic: "u" });
    writer.refuse = (batch) =>
      batch[0]?.topic === "t" ? new UndeliverableError("invalid_record", "INVALID_RECORD") : undefined;
    writer.failingTopics.add("dlq");
    writer.failingTopics.add("u");
    await queue.enqueue([waiting(100)], "queued", "quiet");
    // Two records the sink refuses (422): their dead letters wait (the dead-letter lane takes 2 of 32, 1/16).
    for (const n of [0, 1]) {
      const refused = await queue.enqueue([message(n)], "acknowledged", "noisy").catch((error) => error);
      expect((refused as GatewayError).code).toBe("record_refused");
    }
    await waitUntil(() => queue.depth.records === 3, "two dead letters waiting");
    // A share is 32 / 2 tenants = 16 records, its 2 dead letters included: 14 more, then 503 past half full.
    for (let n = 2; n < 16; n++) await queue.enqueue([waiting(n)], "queued", "noisy");
    await expectRefused(() => queue.enqueue([waiting(16)], "queued", "noisy"), "overloaded");
    await queue.close(10).catch(() => {});
  });
});

describe("DeliveryQueue, several writers per topic", () => {
  function twoWriters(options: Partial<DeliveryQueueOptions> = {}) {
    const writer = new TwoWriters();
    const health = new HealthState();
    const queue = new DeliveryQueue(
      writer,
      { ...OPTIONS, lingerMs: 0, maxInFlight: 1, ...options },
      createMetrics("test", "0"),
      health,
      pino({ level: "silent" }),
    );
    return { writer, queue, health };
  }

  test("a writer waiting for its acknowledgement does not hold the other's records; each keeps one batch in flight, in order", async () => {
    const { writer, queue } = twoWriters();
    const slow = gate();
    writer.gates[0] = slow.opened;
    const first = queue.enqueue([keyed("a", 1)], "acknowledged", "acme");
    await waitUntil(async () => writer.inFlight[0] === 1, "writer 0's batch in flight");
    const later = [2, 3, 4].map((n) => queue.enqueue([keyed("a", n)], "acknowledged", "acme"));
    // Writer 1's records are acknowledged while writer 0's first batch still waits.
    await queue.enqueue([keyed("b", 10), keyed("b", 11)], "acknowledged", "acme");
    await queue.enqueue([keyed("b", 12)], "acknowledged", "acme");
    expect(writer.written).toEqual([[], [10, 11, 12]]);
    slow.open();
    await Promise.all([first, ...later]);
    expect(writer.written[0]).toEqual([1, 2, 3, 4]);
    expect(writer.mostInFlight).toEqual([1, 1]);
    await queue.close(1000);
  });

  test("a writer retrying a transient failure keeps its order and resets only itself; the other writer flows", async () => {
    const { writer, queue } = twoWriters({ unhealthyAfterMs: 60_000 });
    writer.failing[0] = new Error("leader not available");
    const retried = queue.enqueue([keyed("a", 1), keyed("a", 2)], "acknowledged", "acme");
    await waitUntil(async () => writer.resets.length >= 2, "writer 0 retried twice");
    const behind = queue.enqueue([keyed("a", 3)], "acknowledged", "acme");
    await queue.enqueue([keyed("b", 10)], "acknowledged", "acme");
    expect(writer.written).toEqual([[], [10]]);
    writer.failing[0] = undefined;
    await Promise.all([retried, behind]);
    expect(writer.written[0]).toEqual([1, 2, 3]);
    expect(new Set(writer.resets)).toEqual(new Set([0]));
    await queue.close(1000);
  });

  test("a topic refused through one writer is held for all of them: every waiting request gets 503", async () => {
    const { writer, queue, health } = twoWriters({ unavailableRetryMs: 60_000 });
    const slow = gate();
    writer.gates[0] = slow.opened;
    writer.gates[1] = slow.opened;
    writer.failing[0] = new SinkUnavailableError("TOPIC_AUTHORIZATION_FAILED");
    const inFlight = queue.enqueue([keyed("a", 1)], "acknowledged", "acme").catch((error: unknown) => error);
    await waitUntil(async () => writer.inFlight[1] === 0 && writer.inFlight[0] === 1, "writer 0 in flight");
    const behindOther = queue
      .enqueue([keyed("b", 10)], "acknowledged", "acme")
      .catch((error: unknown) => error);
    await waitUntil(async () => writer.inFlight[1] === 1, "writer 1 in flight");
    const pendingOther = queue
      .enqueue([keyed("b", 11)], "acknowledged", "acme")
      .catch((error: unknown) => error);
    slow.open();
    expect(((await inFlight) as GatewayError).code).toBe("unavailable");
    expect(((await pendingOther) as GatewayError).code).toBe("unavailable");
    // Writer 1's batch in flight was acknowledged before the hold; nothing of it is refused.
    expect(await behindOther).toBeUndefined();
    expect(health.degraded()).toEqual(["kafka_topic_unavailable:t"]);
    await expectRefused(() => queue.enqueue([keyed("b", 12)], "acknowledged", "acme"), "unavailable");
    expect(writer.written).toEqual([[], [10]]);
  });
});
