import { expect, test } from "bun:test";
import { HealthState } from "../../../src/features/operations/health.ts";

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
