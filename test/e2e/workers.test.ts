import { describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TEST_SECRET, token } from "../support/tokens.ts";
import {
  connectSubscriber,
  freePort,
  RUNTIMES,
  type RunningGateway,
  runUntilExit,
  startGateway,
  type TestSocket,
} from "./harness.ts";

async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

const listening = (gateway: RunningGateway) => gateway.logs.filter((entry) => entry.msg === "listening");

/** Resolves with the exit code, or "still running" after `ms`. */
function exitWithin(gateway: RunningGateway, ms: number): Promise<number | "still running"> {
  return Promise.race([gateway.process.exited, Bun.sleep(ms).then(() => "still running" as const)]);
}

describe.each(RUNTIMES)("WORKERS supervisor on %s", (runtime) => {
  async function supervise(
    env: Record<string, string> = {},
  ): Promise<{ gateway: RunningGateway; cleanup: () => Promise<void> }> {
    const folder = await mkdtemp(join(tmpdir(), "workers-"));
    const gateway = await startGateway(runtime, {
      WORKERS: "2",
      PORT: String(await freePort()),
      LOCAL_LOG_DIR: folder,
      // A worker's drain outlasts the supervisor's 1 s restart delay.
      DRAIN_DELAY_MS: "1500",
      DRAIN_TIMEOUT_MS: "5000",
      ...env,
    });
    await until(() => listening(gateway).length === 2, 20_000, "two workers listening");
    // Each scrape reaches one worker: said once, at start, by the supervisor.
    expect(
      gateway.logs.filter(
        (entry) => entry.level === "warn" && String(entry.msg).startsWith("WORKERS > 1: each /metrics"),
      ),
    ).toHaveLength(1);
    return {
      gateway,
      cleanup: async () => {
        // The supervisor's whole family: its workers are detached, and outlive a SIGKILL of it alone.
        await gateway.stop("SIGKILL");
        await rm(folder, { recursive: true, force: true });
      },
    };
  }

  test("on the embedded default a publish reaches the subscribers of every worker, in one order", async () => {
    // The in-process bus, even when the test command exported the real Kafka's address.
    const { gateway, cleanup } = await supervise({ KAFKA_BROKERS: "" });
    const sockets: TestSocket[] = [];
    try {
      // The kernel spreads connections over the workers: eight sockets and twenty publishes, each on a
      // connection of its own, all landing on one worker would be a chance of about one in a million.
      for (let n = 0; n < 8; n++) {
        const socket = await connectSubscriber(gateway);
        sockets.push(socket);
        socket.send({ type: "subscribe", channel: "orders" });
        await socket.next((frame) => frame.type === "subscribed");
      }
      const publishToken = await token("acme", ["publish"]);
      for (let n = 0; n < 20; n++) {
        const response = await fetch(`${gateway.url}/v1/publish`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${publishToken}`,
            "content-type": "application/json",
            connection: "close",
          },
          body: JSON.stringify({ channel: "orders", data: { n } }),
        });
        expect(response.status).toBe(202);
      }
      for (const socket of sockets) {
        const received: unknown[] = [];
        while (received.length < 20)
          received.push(((await socket.next((frame) => frame.type === "event")).data as { n: number }).n);
        expect(received).toEqual(Array.from({ length: 20 }, (_, n) => n));
      }
    } finally {
      for (const socket of sockets) socket.close();
      await cleanup();
    }
  }, 30_000);

  test("without REDIS_URL the supervisor says at start that each worker keeps its own Idempotency-Key answers, record ids, presence and limits; with it, nothing", async () => {
    const perWorker = (gateway: RunningGateway) =>
      gateway.logs.filter(
        (entry) => entry.level === "warn" && String(entry.msg).startsWith("WORKERS > 1 without REDIS_URL"),
      );
    const alone = await supervise({ REDIS_URL: "" });
    try {
      expect(perWorker(alone.gateway)).toHaveLength(1);
      expect(perWorker(alone.gateway)[0]?.workers).toBe(2);
    } finally {
      await alone.cleanup();
    }
    // The supervisor only reads the setting: an address nothing listens on will do.
    const shared = await supervise({ REDIS_URL: `redis://127.0.0.1:${await freePort()}` });
    try {
      expect(perWorker(shared.gateway)).toHaveLength(0);
    } finally {
      await shared.cleanup();
    }
  });

  test("every worker runs with the supervisor's runtime flags", async () => {
    const { gateway, cleanup } = await supervise();
    try {
      // Everything after the executable's name, which the supervisor spells as a full path.
      const args = async (pid: number) =>
        (await Bun.file(`/proc/${pid}/cmdline`).text()).split("\0").slice(1);
      const supervisorArgs = await args(gateway.process.pid);
      expect(supervisorArgs.length).toBeGreaterThan(1);
      for (const entry of listening(gateway)) expect(await args(entry.pid as number)).toEqual(supervisorArgs);
    } finally {
      await cleanup();
    }
  });

  test("SIGTERM within the restart delay of a dead worker: no respawn, exit 0 once the other drained", async () => {
    const { gateway, cleanup } = await supervise();
    try {
      process.kill(listening(gateway)[0]?.pid as number, "SIGKILL");
      await until(
        () => gateway.logs.some((entry) => entry.msg === "worker died; restarting it"),
        5000,
        "the supervisor to notice",
      );
      gateway.process.kill("SIGTERM");
      expect(await exitWithin(gateway, 6000)).toBe(0);
      await Bun.sleep(1200);
      expect(listening(gateway).length).toBe(2);
    } finally {
      await cleanup();
    }
  }, 30_000);

  test("SIGTERM while every worker is dead and waiting for its restart: exit 0 at once", async () => {
    const { gateway, cleanup } = await supervise();
    try {
      for (const entry of listening(gateway)) process.kill(entry.pid as number, "SIGKILL");
      await until(
        () => gateway.logs.filter((entry) => entry.msg === "worker died; restarting it").length === 2,
        5000,
        "the supervisor to notice both",
      );
      // With no worker left, the supervisor waits for the restarts instead of ending on its own.
      expect(await exitWithin(gateway, 200)).toBe("still running");
      gateway.process.kill("SIGTERM");
      expect(await exitWithin(gateway, 3000)).toBe(0);
      await Bun.sleep(1200);
      expect(listening(gateway).length).toBe(2);
    } finally {
      await cleanup();
    }
  }, 30_000);

  test("a worker that cannot start (a schema source that cannot be read): exit 1 at once, as one process does, not a restart every second", async () => {
    const folder = await mkdtemp(join(tmpdir(), "workers-"));
    try {
      const { code, stdout } = await runUntilExit(
        runtime,
        {
          JWT_SECRET: TEST_SECRET,
          WORKERS: "2",
          HOST: "127.0.0.1",
          PORT: String(await freePort()),
          LOCAL_LOG_DIR: folder,
          SCHEMAS: join(folder, "missing"),
        },
        15_000,
      );
      expect(code).toBe(1);
      const messages = stdout
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => String((JSON.parse(line) as { msg?: unknown }).msg));
      expect(messages).toContain("worker could not start; stopping the other workers");
      expect(messages).not.toContain("worker died; restarting it");
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  }, 30_000);
});
