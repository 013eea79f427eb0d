import { describe, expect, test } from "bun:test";
import { createTopic, readTopic } from "../support/kafka.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { waitUntil } from "../support/wait.ts";
import { ingestClick, RUNTIMES, startGateway, TestSocket, waitForLog } from "./harness.ts";

function saslListener(mechanism: string): string {
  const brokers =
    mechanism === "plain" ? process.env.KAFKA_SASL_PLAIN_BROKERS : process.env.KAFKA_SASL_SCRAM_BROKERS;
  if (!brokers) throw new Error('SASL listeners missing: eval "$(scripts/services env)"');
  return brokers;
}

/**
 * Local ports of the established connections `pid` holds to `brokers`' port (ss): the same port
 * later means the same TCP connection.
 */
function brokerConnections(pid: number, brokers: string): Set<number> {
  const brokerPort = brokers.split(",")[0]?.split(":").at(-1);
  const listing = Bun.spawnSync(["ss", "-Htnp", "state", "established", `( dport = :${brokerPort} )`]);
  const ports = new Set<number>();
  for (const line of listing.stdout.toString().split("\n")) {
    const local = /^\S+\s+\S+\s+\S+:(\d+)\s/.exec(line);
    if (local && line.includes(`pid=${pid},`)) ports.add(Number(local[1]));
  }
  return ports;
}

/**
 * The SASL listeners expire sessions after KAFKA_REAUTH_MS (KIP-368): 5 s from scripts/services,
 * which `scripts/services env` exports from the broker's own settings; 10 s, the longest it has
 * been, if it does not say.
 */
const SESSION_SECONDS = Math.ceil(Number(process.env.KAFKA_REAUTH_MS || 10_000) / 1000);
const CASES = [
  { mechanism: "plain", seconds: 2, reauthenticates: false },
  { mechanism: "scram-sha-256", seconds: 2, reauthenticates: false },
  // Past the broker's session lifetime (by 3 s): a connection still in use must have re-authenticated,
  // since the broker closes one whose session expired.
  { mechanism: "scram-sha-512", seconds: SESSION_SECONDS + 3, reauthenticates: true },
];
const SENDERS = 4;
/** Past the broker's session lifetime (by 2 s), counted from the fan-out reader's start. */
const FANOUT_SECONDS = SESSION_SECONDS + 2;

function saslGateway(runtime: (typeof RUNTIMES)[number], mechanism: string, env: Record<string, string>) {
  return startGateway(runtime, {
    KAFKA_BROKERS: saslListener(mechanism),
    KAFKA_SASL_MECHANISM: mechanism,
    KAFKA_SASL_USERNAME: process.env.KAFKA_SASL_USERNAME ?? "",
    KAFKA_SASL_PASSWORD: process.env.KAFKA_SASL_PASSWORD ?? "",
    JWT_SECRET: TEST_SECRET,
    ...env,
  });
}

describe.each(RUNTIMES)("SASL to a real broker on %s", (runtime) => {
  for (const { mechanism, seconds, reauthenticates } of CASES) {
    const name = reauthenticates
      ? `${mechanism}: ${SENDERS} clients sending for ${seconds} s, past the session lifetime: every request succeeds, the broker connection re-authenticated instead of being dropped, and the records are in Kafka`
      : `${mechanism}: ${SENDERS} clients sending for ${seconds} s: every request succeeds and the records are in Kafka`;
    test(name, async () => {
      const topic = await createTopic(`sasl-${mechanism}-${runtime}`);
      const gateway = await saslGateway(runtime, mechanism, { KAFKA_TOPIC: topic });
      try {
        const headers = {
          authorization: `Bearer ${await token("acme", ["ingest"])}`,
          "content-type": "application/json",
        };
        const statuses: number[] = [];
        const send = async () => {
          const response = await fetch(`${gateway.url}/v1/events`, {
            method: "POST",
            headers,
            body: JSON.stringify({ type: "click", data: { element: "x" } }),
          });
          await response.arrayBuffer();
          statuses.push(response.status);
        };
        await send();
        const early = brokerConnections(gateway.process.pid, saslListener(mechanism));
        const deadline = Date.now() + seconds * 1000;
        await Promise.all(
          Array.from({ length: SENDERS }, async () => {
            while (Date.now() < deadline) await send();
          }),
        );
        expect(statuses.filter((status) => status !== 202)).toEqual([]);
        if (reauthenticates) {
          const late = brokerConnections(gateway.process.pid, saslListener(mechanism));
          expect(early.size).toBeGreaterThan(0);
          // Every connection open at the start, the producer's among them, is still the same one.
          expect([...early].filter((port) => !late.has(port))).toEqual([]);
        }
        expect((await readTopic(topic, statuses.length, 20_000)).length).toBe(statuses.length);
      } finally {
        await gateway.stop("SIGKILL");
      }
    }, 60_000);
  }

  test("credentials the broker refuses: its answer, not an outage: /health 200 listing the topic as degraded, requests 503 with Retry-After at once, never after the ack timeout", async () => {
    const topic = await createTopic(`sasl-refused-${runtime}`);
    // A long ack timeout: a request waiting for it instead of the refusal would fail the test's time limit.
    const gateway = await saslGateway(runtime, "scram-sha-512", {
      KAFKA_TOPIC: topic,
      KAFKA_SASL_PASSWORD: "not-the-password",
      INGEST_ACK_TIMEOUT_MS: "60000",
    });
    try {
      const response = await ingestClick(gateway, {}, AbortSignal.timeout(15_000));
      expect(response.status).toBe(503);
      expect(Number(response.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(((await response.json()) as { message: string }).message).toContain(
        "SASL_AUTHENTICATION_FAILED",
      );
      // Every instance has the same credentials: taking them all out of service would not route around it.
      // The fan-out reader is refused too, and says so once its first attempt has been.
      const expected = [`kafka_topic_unavailable:${topic}`, "kafka_topic_unreadable:fanout"];
      let degraded: string[] | undefined;
      await waitUntil(async () => {
        const health = await fetch(`${gateway.url}/health`);
        expect(health.status).toBe(200);
        degraded = ((await health.json()) as { degraded?: string[] }).degraded;
        return degraded?.length === 2;
      }, "both topics listed as degraded");
      expect([...(degraded ?? [])].sort()).toEqual(expected);
    } finally {
      await gateway.stop("SIGKILL");
    }
  }, 60_000);

  test(`scram-sha-512: fan-out keeps delivering to a subscriber for ${FANOUT_SECONDS} s, past the session lifetime: each event arrives before the next is published, and the live reader's connection re-authenticated instead of being dropped and rebuilt`, async () => {
    const mechanism = "scram-sha-512";
    const gateway = await saslGateway(runtime, mechanism, {
      KAFKA_TOPIC: await createTopic(`sasl-fanout-events-${runtime}`),
      KAFKA_FANOUT_TOPIC: await createTopic(`sasl-fanout-${runtime}`),
    });
    try {
      await waitForLog(gateway, "fan-out consumer reading");
      const readerStarted = Date.now();
      const socket = new TestSocket(`${gateway.wsUrl}?token=${await token("acme", ["subscribe"])}`);
      await socket.opened();
      socket.send({ type: "subscribe", channel: "ticks" });
      expect((await socket.next((frame) => frame.type === "subscribed" || frame.type === "error")).type).toBe(
        "subscribed",
      );
      const headers = {
        authorization: `Bearer ${await token("acme", ["ingest", "publish"])}`,
        "content-type": "application/json",
      };
      const early = brokerConnections(gateway.process.pid, saslListener(mechanism));
      let sent = 0;
      while (Date.now() < readerStarted + FANOUT_SECONDS * 1000) {
        const response = await fetch(`${gateway.url}/v1/events`, {
          method: "POST",
          headers,
          body: JSON.stringify({ type: "click", channel: "ticks", data: { element: `e${sent}` } }),
        });
        await response.arrayBuffer();
        expect(response.status).toBe(202);
        const event = await socket.next((frame) => frame.type === "event", 10_000);
        expect(event.data).toEqual({ element: `e${sent}` });
        sent++;
      }
      socket.close();
      const late = brokerConnections(gateway.process.pid, saslListener(mechanism));
      expect([...early].filter((port) => !late.has(port))).toEqual([]);
      expect(gateway.logs.filter((entry) => entry.msg === "fan-out consumer failed; rebuilding it")).toEqual(
        [],
      );
    } finally {
      await gateway.stop("SIGKILL");
    }
  }, 60_000);
});
