import { describe, expect, test } from "bun:test";
import { Consumer, stringDeserializers } from "@platformatic/kafka";
import { createTopic, services } from "../support/kafka.ts";
import { servicesCommand } from "../support/services.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { RUNTIMES, type RunningGateway, type Runtime, startGateway } from "./harness.ts";

/**
 * The ledger: clients send batches of records with ids of their own under
 * load while the broker restarts or the gateway is stopped (SIGTERM) or killed
 * (SIGKILL); afterwards the whole topic is read back from Kafka. Every id
 * whose request got a 202 must be there; duplicates are allowed (at-least-once)
 * and counted.
 */

const SENDERS = 4;
const RECORDS_PER_REQUEST = 20;

class Ledger {
  readonly acknowledged = new Set<string>();
  readonly statuses = new Map<string, number>();
  requests = 0;
  records = 0;

  note(ids: string[], outcome: string): void {
    this.requests++;
    this.records += ids.length;
    this.statuses.set(outcome, (this.statuses.get(outcome) ?? 0) + 1);
    if (outcome === "202") for (const id of ids) this.acknowledged.add(id);
  }
}

/** Where the clients send: the gateway changes when one is replaced. */
interface Target {
  gateway: RunningGateway;
}

async function startLedgerGateway(runtime: Runtime, topic: string): Promise<RunningGateway> {
  return startGateway(runtime, {
    KAFKA_BROKERS: services().brokers,
    KAFKA_TOPIC: topic,
    JWT_SECRET: TEST_SECRET,
    RATE_LIMIT_ENABLED: "false",
    DRAIN_DELAY_MS: "500",
    DRAIN_TIMEOUT_MS: "10000",
    KAFKA_UNHEALTHY_AFTER_MS: "2000",
    INGEST_ACK_TIMEOUT_MS: "5000",
  });
}

/** SENDERS clients sending until `stop` is called; resolves once all of them stopped. */
function sendUnderLoad(target: Target, ledger: Ledger, prefix: string) {
  let sending = true;
  const sender = async (client: number) => {
    const authorization = `Bearer ${await token(`tenant${client}`, ["ingest"])}`;
    for (let sequence = 0; sending; sequence++) {
      const ids = Array.from(
        { length: RECORDS_PER_REQUEST },
        (_, index) => `${prefix}-${client}-${sequence}-${index}`,
      );
      let outcome: string;
      try {
        const response = await fetch(`${target.gateway.url}/v1/events`, {
          method: "POST",
          headers: { authorization, "content-type": "application/json" },
          body: JSON.stringify(ids.map((id) => ({ type: "click", id, data: { element: "b" } }))),
          signal: AbortSignal.timeout(10_000),
        });
        await response.arrayBuffer();
        outcome = String(response.status);
      } catch {
        outcome = "no answer";
      }
      ledger.note(ids, outcome);
      if (outcome !== "202") await Bun.sleep(100);
    }
  };
  const senders = Promise.all(Array.from({ length: SENDERS }, (_, client) => sender(client)));
  return {
    stop: async () => {
      sending = false;
      await senders;
    },
  };
}

/** Reads the whole topic, up to the end offsets it has now, and counts each id. */
async function readWholeTopic(topic: string): Promise<Map<string, number>> {
  const consumer = new Consumer({
    clientId: "ledger-reader",
    groupId: `ledger-reader-${Date.now()}-${Math.random().toString(36).slice(2)}`,
    bootstrapBrokers: services().brokers.split(","),
    deserializers: stringDeserializers,
    maxWaitTime: 200,
  });
  const counts = new Map<string, number>();
  try {
    const ends = (await consumer.listOffsets({ topics: [topic] })).get(topic) ?? [];
    const unfinished = new Set(ends.flatMap((end, partition) => (end > 0n ? [partition] : [])));
    if (unfinished.size === 0) return counts;
    const stream = await consumer.consume({
      topics: [topic],
      mode: "earliest",
      autocommit: false,
      maxWaitTime: 200,
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`topic not read to its end within 30 s`)), 30_000);
      stream.on("data", (message) => {
        const id = (JSON.parse(message.value) as { id: string }).id;
        counts.set(id, (counts.get(id) ?? 0) + 1);
        if (message.offset + 1n >= (ends[message.partition] ?? 0n)) unfinished.delete(message.partition);
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
  return counts;
}

/** Checks the ledger against Kafka and prints the counts. */
async function audit(runtime: Runtime, scenario: string, topic: string, ledger: Ledger) {
  const counts = await readWholeTopic(topic);
  const missing = [...ledger.acknowledged].filter((id) => !counts.has(id));
  let duplicates = 0;
  let unacknowledgedDelivered = 0;
  for (const [id, count] of counts) {
    duplicates += count - 1;
    if (!ledger.acknowledged.has(id)) unacknowledgedDelivered++;
  }
  const statuses = [...ledger.statuses].map(([status, count]) => `${status}: ${count}`).join(", ");
  console.log(
    `ledger ${runtime} / ${scenario}: ${ledger.requests} requests (${ledger.records} records) → ${statuses}; ` +
      `${ledger.acknowledged.size} records acknowledged, ${missing.length} missing from Kafka, ` +
      `${duplicates} duplicates, ${unacknowledgedDelivered} delivered without a 202`,
  );
  expect(ledger.acknowledged.size).toBeGreaterThan(0);
  expect(missing).toEqual([]);
}

describe.each(RUNTIMES)("ledger on %s", (runtime) => {
  test("broker restart under load: every acknowledged record is in Kafka", async () => {
    const topic = await createTopic(`ledger-broker-${runtime}`);
    const ledger = new Ledger();
    const target = { gateway: await startLedgerGateway(runtime, topic) };
    const load = sendUnderLoad(target, ledger, "broker");
    let brokerStopped = false;
    try {
      await Bun.sleep(2500);
      await servicesCommand("stop-kafka");
      brokerStopped = true;
      await Bun.sleep(1500);
      await servicesCommand("start-kafka");
      brokerStopped = false;
      await Bun.sleep(4000);
    } finally {
      await load.stop();
      // Other tests use the broker: never leave it down.
      if (brokerStopped) await servicesCommand("start-kafka");
      await target.gateway.stop("SIGTERM");
    }
    await audit(runtime, "broker restart", topic, ledger);
  }, 60_000);

  test("SIGTERM under load drains, exits 0, and a fresh gateway takes over: every acknowledged record is in Kafka", async () => {
    const topic = await createTopic(`ledger-sigterm-${runtime}`);
    const ledger = new Ledger();
    const target = { gateway: await startLedgerGateway(runtime, topic) };
    const load = sendUnderLoad(target, ledger, "sigterm");
    try {
      await Bun.sleep(2500);
      expect(await target.gateway.stop("SIGTERM")).toBe(0);
      target.gateway = await startLedgerGateway(runtime, topic);
      await Bun.sleep(2500);
    } finally {
      await load.stop();
      await target.gateway.stop("SIGTERM");
    }
    await audit(runtime, "SIGTERM", topic, ledger);
  }, 60_000);

  test("SIGKILL under load, then a fresh gateway: every acknowledged record is in Kafka", async () => {
    const topic = await createTopic(`ledger-sigkill-${runtime}`);
    const ledger = new Ledger();
    const target = { gateway: await startLedgerGateway(runtime, topic) };
    const load = sendUnderLoad(target, ledger, "sigkill");
    try {
      await Bun.sleep(2500);
      await target.gateway.stop("SIGKILL");
      target.gateway = await startLedgerGateway(runtime, topic);
      await Bun.sleep(2500);
    } finally {
      await load.stop();
      await target.gateway.stop("SIGTERM");
    }
    await audit(runtime, "SIGKILL", topic, ledger);
  }, 60_000);
});
