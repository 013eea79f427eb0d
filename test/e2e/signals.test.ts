import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { TEST_SECRET } from "../support/tokens.ts";
import { waitUntil } from "../support/wait.ts";
import { freePort, RUNTIMES, runUntilExit, startGateway } from "./harness.ts";

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

/** The pids of `pid`'s children (the kernel's list; empty once it is gone). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
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

  test("SIGHUP, SIGUSR1 and SIGUSR2 are logged and ignored: it keeps serving, then SIGTERM drains it to exit 0", async () => {
    const gateway = await startGateway(runtime, { JWT_SECRET: TEST_SECRET });
    try {
      // Before: SIGHUP and SIGUSR2 ended both runtimes at once with no drain, SIGUSR1 ended Bun and opened
      // Node's debugger with a plain-text banner on stderr.
      for (const signal of ["SIGHUP", "SIGUSR1", "SIGUSR2"] as const) {
        gateway.process.kill(signal);
        await waitUntil(
          () => gateway.logs.some((entry) => entry.signal === signal && entry.level === "warn"),
          `${signal} logged`,
        );
        expect((await fetch(`${gateway.url}/health`)).status).toBe(200);
      }
      expect(gateway.logs.find((entry) => entry.signal === "SIGHUP")?.msg).toBe(
        "SIGHUP ignored: settings are read at start; SIGTERM, SIGINT or SIGQUIT drains the gateway",
      );
      expect(await gateway.stop("SIGTERM")).toBe(0);
      expect(gateway.logs.some((entry) => entry.msg === "drain complete: exiting")).toBe(true);
      expect(await gateway.stderr).toBe("");
    } finally {
      await gateway.stop("SIGKILL");
    }
  });

  test("workers whose supervisor is killed while they still load their code exit, instead of starting and serving orphaned", async () => {
    const broker = silentBroker();
    let workers: number[] = [];
    try {
      const { stdout } = await runUntilExit(
        runtime,
        {
          WORKERS: "2",
          KAFKA_BROKERS: broker.address,
          REDIS_URL: "",
          HOST: "127.0.0.1",
          PORT: String(await freePort()),
          JWT_SECRET: TEST_SECRET,
        },
        20_000,
        async (supervisor) => {
          // As soon as both exist: on Node a worker's 'disconnect' then comes before its code watches for it.
          await waitUntil(() => childrenOf(supervisor.pid).length === 2, "both workers spawned", 10_000, 5);
          workers = childrenOf(supervisor.pid);
          supervisor.kill("SIGKILL");
          // Before: they went on with the start (35 s on this broker), then listened with nobody to stop them.
          await waitUntil(
            () => workers.every((pid) => !existsSync(`/proc/${pid}`)),
            "the orphaned workers gone",
          );
        },
      );
      const exits = stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as { msg: string; pid: number; signal?: string })
        .filter((line) => line.msg === "signal before listening: exiting, nothing accepted yet");
      expect(exits.map((line) => line.pid).sort()).toEqual([...workers].sort());
      expect(exits.every((line) => line.signal === "supervisor gone")).toBe(true);
    } finally {
      broker.stop();
    }
  }, 30_000);
});
