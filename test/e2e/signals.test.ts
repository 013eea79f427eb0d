import { describe, expect, test } from "bun:test";
import { TEST_SECRET } from "../support/tokens.ts";
import { RUNTIMES, runUntilExit } from "./harness.ts";

/** A "broker" that takes connections and never answers: the start waits on it for Kafka's request timeout (30 s). */
function silentBroker(): { address: string; connected: Promise<void>; stop(): void } {
  let connected: () => void = () => {};
  const reached = new Promise<void>((resolve) => {
    connected = resolve;
  });
  const listener = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: { open: () => connected(), data: () => {} },
  });
  return { address: `127.0.0.1:${listener.port}`, connected: reached, stop: () => listener.stop(true) };
}

describe.each(RUNTIMES)("signals on %s", (runtime) => {
  test.each(["SIGTERM", "SIGINT"] as const)(
    "%s while the start waits on Kafka: one JSON line, exit 0 at once (nothing accepted yet)",
    async (signal) => {
      const broker = silentBroker();
      try {
        const started = Date.now();
        const { code, stdout, stderr } = await runUntilExit(
          runtime,
          {
            KAFKA_BROKERS: broker.address,
            REDIS_URL: "",
            HOST: "127.0.0.1",
            PORT: "0",
            JWT_SECRET: TEST_SECRET,
          },
          20_000,
          async (child) => {
            await broker.connected;
            child.kill(signal);
          },
        );
        // Before: no handler yet, so the runtime's default ended the process by the signal (143 or 130), unlogged.
        expect(code).toBe(0);
        expect(stderr).toBe("");
        const lines = stdout
          .trim()
          .split("\n")
          .map((line) => JSON.parse(line) as { msg: string; signal?: string });
        expect(lines.map((line) => line.msg)).not.toContain("listening");
        expect(
          lines.find((line) => line.msg === "signal before listening: exiting, nothing accepted yet"),
        ).toEqual(expect.objectContaining({ level: "info", signal }));
        // Not after the start's 30 s wait on the broker.
        expect(Date.now() - started).toBeLessThan(15_000);
      } finally {
        broker.stop();
      }
    },
    25_000,
  );
});
