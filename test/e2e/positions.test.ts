import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTopic, services } from "../support/kafka.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { RUNTIMES, type RunningGateway, startGateway, TestSocket, waitForLog } from "./harness.ts";

type Frame = Record<string, unknown>;

async function connect(gateway: RunningGateway): Promise<TestSocket> {
  const socket = new TestSocket(`${gateway.wsUrl}?token=${await token("acme", ["subscribe"])}`);
  await socket.opened();
  await socket.next((frame) => frame.type === "connected");
  return socket;
}

async function publish(gateway: RunningGateway, channel: string, n: number): Promise<void> {
  const response = await fetch(`${gateway.url}/v1/publish`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${await token("acme", ["publish"])}`,
      "content-type": "application/json",
    },
    body: JSON.stringify({ channel, data: { n } }),
  });
  expect(response.status).toBe(202);
}

const BUSES = ["embedded", "kafka"] as const;

// SPEC: `subscribed` carries the channel's current position "also when it has no events yet";
// on a partition nothing was ever written to it was null, and a client had nothing to resume from.
describe.each(RUNTIMES.flatMap((runtime) => BUSES.map((bus) => [runtime, bus] as const)))(
  "the position of a channel on a partition with nothing written yet (%s, %s bus)",
  (runtime, bus) => {
    let gateway: RunningGateway;
    beforeAll(async () => {
      const env: Record<string, string> =
        bus === "kafka"
          ? {
              KAFKA_BROKERS: services().brokers,
              // Fresh topics: every partition of the fan-out topic is empty.
              KAFKA_TOPIC: await createTopic(`positions-events-${runtime}`),
              KAFKA_FANOUT_TOPIC: await createTopic(`positions-fanout-${runtime}`),
              JWT_SECRET: TEST_SECRET,
            }
          : { KAFKA_BROKERS: "", JWT_SECRET: TEST_SECRET };
      gateway = await startGateway(runtime, env);
      if (bus === "kafka") await waitForLog(gateway, "fan-out consumer reading");
    });
    afterAll(async () => {
      await gateway?.stop("SIGKILL");
    });

    test("is given, and resuming from it yields every event published since", async () => {
      const first = await connect(gateway);
      first.send({ type: "subscribe", channel: "fresh" });
      const subscribed = await first.next((frame) => frame.type === "subscribed");
      expect(subscribed.lastEventId).toEqual(expect.stringMatching(/^[A-Za-z0-9]+-\d+--1$/));
      first.close();
      await first.closed;

      await publish(gateway, "fresh", 1);
      await publish(gateway, "fresh", 2);
      const again = await connect(gateway);
      again.send({ type: "subscribe", channel: "fresh", since: subscribed.lastEventId });
      const events: Frame[] = [];
      while (events.length < 2) events.push(await again.next((frame) => frame.type === "event", 10_000));
      expect(events.map((event) => (event.data as { n: number }).n)).toEqual([1, 2]);
      again.close();
    });
  },
);
