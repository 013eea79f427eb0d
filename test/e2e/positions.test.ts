import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createTopic, services } from "../support/kafka.ts";
import { TEST_SECRET } from "../support/tokens.ts";
import {
  connectSubscriber,
  publishEvent,
  RUNTIMES,
  type RunningGateway,
  startGateway,
  waitForLog,
} from "./harness.ts";

type Frame = Record<string, unknown>;

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
      const first = await connectSubscriber(gateway);
      first.send({ type: "subscribe", channel: "fresh" });
      const subscribed = await first.next((frame) => frame.type === "subscribed");
      expect(subscribed.lastEventId).toEqual(expect.stringMatching(/^[A-Za-z0-9]+-\d+--1$/));
      first.close();
      await first.closed;

      await publishEvent(gateway, "fresh", { n: 1 });
      await publishEvent(gateway, "fresh", { n: 2 });
      const again = await connectSubscriber(gateway);
      again.send({ type: "subscribe", channel: "fresh", since: subscribed.lastEventId });
      const events: Frame[] = [];
      while (events.length < 2) events.push(await again.next((frame) => frame.type === "event", 10_000));
      expect(events.map((event) => (event.data as { n: number }).n)).toEqual([1, 2]);
      again.close();
    });
  },
);
