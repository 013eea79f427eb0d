import { expect, test } from "bun:test";
import { HealthState } from "../../../src/features/operations/health.ts";
import { healthRoutes } from "../../../src/features/operations/routes.ts";

test("any reason makes the instance unready and is listed", () => {
  const health = new HealthState();
  health.set("kafka_unreachable", true);
  expect(health.ready).toBe(false);
  expect(health.list()).toEqual(["kafka_unreachable"]);
  health.set("kafka_unreachable", false);
  expect(health.ready).toBe(true);
});

test("an advisory reason is recorded but keeps the instance ready; others still count", () => {
  const health = new HealthState(["kafka_unreachable"]);
  health.set("kafka_unreachable", true);
  expect(health.has("kafka_unreachable")).toBe(true);
  expect(health.ready).toBe(true);
  expect(health.list()).toEqual([]);
  health.set("draining", true);
  expect(health.ready).toBe(false);
  expect(health.list()).toEqual(["draining"]);
});

test("a degradation keeps the instance ready and is reported; so is an active advisory reason", () => {
  const health = new HealthState(["kafka_unreachable"]);
  health.degrade("kafka_topic_unavailable:events", true);
  expect(health.ready).toBe(true);
  expect(health.degraded()).toEqual(["kafka_topic_unavailable:events"]);
  health.set("kafka_unreachable", true);
  expect(health.degraded()).toEqual(["kafka_topic_unavailable:events", "kafka_unreachable"]);
  health.degrade("kafka_topic_unavailable:events", false);
  health.set("kafka_unreachable", false);
  expect(health.degraded()).toEqual([]);
});

test("/health answers 200 with `degraded` only when there is one, and 503 with both lists", async () => {
  const health = new HealthState();
  const route = healthRoutes(health).find((each) => each.path === "/health");
  const answer = async () => {
    const reply = await route?.handler({} as never, {} as never);
    return { status: reply?.status, body: JSON.parse(String(reply?.body)) };
  };
  expect(await answer()).toEqual({ status: 200, body: { status: "ok" } });
  health.degrade("kafka_topic_unavailable:dlq", true);
  expect(await answer()).toEqual({
    status: 200,
    body: { status: "ok", degraded: ["kafka_topic_unavailable:dlq"] },
  });
  health.set("local_log_unwritable", true);
  expect(await answer()).toEqual({
    status: 503,
    body: {
      status: "unavailable",
      reasons: ["local_log_unwritable"],
      degraded: ["kafka_topic_unavailable:dlq"],
    },
  });
});
