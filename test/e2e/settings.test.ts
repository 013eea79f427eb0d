import { describe, expect, test } from "bun:test";
import { TEST_SECRET } from "../support/tokens.ts";
import { RUNTIMES, runUntilExit } from "./harness.ts";

/**
 * Settings an operator may write that the gateway would take and then misbehave on (settings that
 * contradict one another, a bound that refuses everything): the real process exits 1 at start naming them
 * (stderr, and the one fatal JSON line on stdout).
 */
describe.each(RUNTIMES)("settings refused at start on %s", (runtime) => {
  async function refused(env: Record<string, string>): Promise<{ variables: string[]; problems: string[] }> {
    const { code, stdout, stderr } = await runUntilExit(runtime, {
      JWT_SECRET: TEST_SECRET,
      PORT: "0",
      ...env,
    });
    expect(code).toBe(1);
    expect(stderr).toStartWith("invalid configuration:\n  - ");
    const fatal = JSON.parse(stdout.trim()) as { level: string; variables: string[]; problems: string[] };
    expect(fatal.level).toBe("fatal");
    return fatal;
  }

  test("one Kafka topic as both the ingest and the fan-out topic", async () => {
    const fatal = await refused({ KAFKA_TOPIC: "shared", KAFKA_FANOUT_TOPIC: "shared" });
    expect(fatal.variables).toEqual(["KAFKA_TOPIC", "KAFKA_FANOUT_TOPIC"]);
    expect(fatal.problems).toEqual([
      'KAFKA_TOPIC/KAFKA_FANOUT_TOPIC: must name different topics, both are "shared"',
    ]);
  });

  test("no replay from the fan-out topic at all (REPLAY_MAX_CONCURRENT=0)", async () => {
    const fatal = await refused({ REPLAY_MAX_CONCURRENT: "0" });
    expect(fatal.variables).toEqual(["REPLAY_MAX_CONCURRENT"]);
    expect(fatal.problems).toEqual(["REPLAY_MAX_CONCURRENT: expected an integer in [1, 10000], got 0"]);
  });

  test("a producer queue smaller than one full request", async () => {
    const fatal = await refused({ KAFKA_QUEUE_MAX_RECORDS: "10" });
    expect(fatal.variables).toEqual(["KAFKA_QUEUE_MAX_RECORDS", "MAX_RECORDS_PER_REQUEST"]);
    expect(fatal.problems[0]).toContain("the queue must hold one full request");
  });

  test("a SASL mechanism for a Kafka whose KAFKA_BROKERS is missing", async () => {
    const fatal = await refused({
      KAFKA_BROKERS: "",
      KAFKA_SASL_MECHANISM: "scram-sha-256",
      KAFKA_SASL_USERNAME: "gateway",
      KAFKA_SASL_PASSWORD: "gateway-secret",
    });
    expect(fatal.variables).toEqual(["KAFKA_BROKERS"]);
    expect(fatal.problems[0]).toStartWith("KAFKA_BROKERS: required with KAFKA_SASL_MECHANISM=scram-sha-256");
  });

  test("several workers, each to pick a /metrics port of its own (METRICS_PORT=0)", async () => {
    const fatal = await refused({ PORT: "19150", WORKERS: "2", METRICS_PORT: "0" });
    expect(fatal.variables).toEqual(["WORKERS", "METRICS_PORT"]);
  });

  test("a number past 2^53 is quoted as written, not as the number it reads as", async () => {
    const fatal = await refused({ WS_MAX_CONNECTIONS: "9007199254740993" });
    expect(fatal.problems).toEqual([
      "WS_MAX_CONNECTIONS: expected an integer of at least 1, got 9007199254740993",
    ]);
  });

  test("a number with a unit is refused with the form and range it takes", async () => {
    const fatal = await refused({ WS_IDLE_TIMEOUT_SEC: "2m", MAX_BODY_BYTES: "10MB" });
    expect(fatal.problems).toEqual([
      'MAX_BODY_BYTES: expected an integer in [1, 67108864] (digits only, no unit), got "10MB"',
      'WS_IDLE_TIMEOUT_SEC: expected an integer in [8, 960] (digits only, no unit), got "2m"',
    ]);
  });
});
