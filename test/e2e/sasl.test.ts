import { describe, expect, test } from "bun:test";
import { createTopic, readTopic } from "../support/kafka.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { RUNTIMES, startGateway } from "./harness.ts";

function saslListener(mechanism: string): string {
  const brokers =
    mechanism === "plain" ? process.env.KAFKA_SASL_PLAIN_BROKERS : process.env.KAFKA_SASL_SCRAM_BROKERS;
  if (!brokers) throw new Error('SASL listeners missing: eval "$(scripts/services env)"');
  return brokers;
}

/** The SASL listeners expire sessions after 10 s, so a long run crosses several re-authentications (KIP-368). */
const CASES = [
  { mechanism: "plain", seconds: 2 },
  { mechanism: "scram-sha-256", seconds: 2 },
  // Past the broker's 10 s session lifetime: the client re-authenticates at least once under load.
  { mechanism: "scram-sha-512", seconds: 13 },
];

describe.each(RUNTIMES)("SASL to a real broker on %s", (runtime) => {
  for (const { mechanism, seconds } of CASES) {
    test(`${mechanism}: every request succeeds for ${seconds} s and the records are in Kafka`, async () => {
      const topic = await createTopic(`sasl-${mechanism}-${runtime}`);
      const gateway = await startGateway(runtime, {
        KAFKA_BROKERS: saslListener(mechanism),
        KAFKA_SASL_MECHANISM: mechanism,
        KAFKA_SASL_USERNAME: process.env.KAFKA_SASL_USERNAME ?? "",
        KAFKA_SASL_PASSWORD: process.env.KAFKA_SASL_PASSWORD ?? "",
        KAFKA_TOPIC: topic,
        JWT_SECRET: TEST_SECRET,
      });
      try {
        const headers = {
          authorization: `Bearer ${await token("acme", ["ingest"])}`,
          "content-type": "application/json",
        };
        const statuses: number[] = [];
        const deadline = Date.now() + seconds * 1000;
        while (Date.now() < deadline) {
          const response = await fetch(`${gateway.url}/v1/events`, {
            method: "POST",
            headers,
            body: JSON.stringify({ type: "click", data: { element: "x" } }),
          });
          await response.arrayBuffer();
          statuses.push(response.status);
          await Bun.sleep(50);
        }
        expect(statuses.filter((status) => status !== 202)).toEqual([]);
        expect((await readTopic(topic, statuses.length, 20_000)).length).toBe(statuses.length);
      } finally {
        await gateway.stop("SIGKILL");
      }
    }, 60_000);
  }
});
