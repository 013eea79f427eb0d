import { describe, expect, test } from "bun:test";
import { TEST_SECRET } from "../support/tokens.ts";
import { RUNTIMES, runUntilExit } from "./harness.ts";

/**
 * Settings that are each valid but contradict one another, as an operator writes them: the real process
 * exits 1 at start naming them (stderr, and the one fatal JSON line on stdout), instead of starting and
 * then misbehaving.
 */
describe.each(RUNTIMES)("contradictory settings on %s", (runtime) => {
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
});
