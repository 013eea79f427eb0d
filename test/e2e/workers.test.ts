import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createTopic, readTopic, services } from "../support/kafka.ts";
import { servicesCommand } from "../support/services.ts";
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
  ): Promise<{ gateway: RunningGateway; folder: string; cleanup: () => Promise<void> }> {
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
      folder,
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

  test("without REDIS_URL the supervisor says at start that each worker keeps its own presence and limits; with it, nothing", async () => {
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

  test("without REDIS_URL a retried Idempotency-Key and a repeated record id are written once, whichever worker takes them", async () => {
    const table = join(await mkdtemp(join(tmpdir(), "workers-quotas-")), "quotas.json");
    await writeFile(table, JSON.stringify({ deduped: { dedupWindowSec: 600 } }));
    const { gateway, folder, cleanup } = await supervise({
      KAFKA_BROKERS: "",
      REDIS_URL: "",
      TENANT_QUOTAS: table,
    });
    try {
      const post = async (tenant: string, body: string, key?: string) => {
        const response = await fetch(`${gateway.url}/v1/events`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${await token(tenant, ["ingest"])}`,
            "content-type": "application/json",
            // A connection each: the kernel hands each to either worker.
            connection: "close",
            ...(key ? { "idempotency-key": `"${key}"` } : {}),
          },
          body,
        });
        expect(response.status).toBe(202);
        return response.headers.get("idempotency-replayed");
      };
      const replayed: Array<string | null> = [];
      // Twelve sends all reaching one worker: a chance of one in 2,048.
      for (let n = 0; n < 12; n++)
        replayed.push(
          await post("acme", JSON.stringify({ type: "click", data: { element: "keyed" } }), "retry-1"),
        );
      expect(replayed.filter((header) => header === "true")).toHaveLength(11);
      for (let n = 0; n < 12; n++)
        await post(
          "deduped",
          JSON.stringify({ id: "record-1", type: "click", data: { element: "deduped" } }),
        );
      await Bun.sleep(300);
      // Each worker appends to a log of its own, in a folder of its own.
      const written = (await readdir(folder, { recursive: true }))
        .filter((name) => name.endsWith(".ndjson"))
        .map((name) => readFileSync(join(folder, name), "utf8"))
        .join("")
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as { value: { data: { element: string } } });
      expect(written.filter((record) => record.value.data.element === "keyed")).toHaveLength(1);
      expect(written.filter((record) => record.value.data.element === "deduped")).toHaveLength(1);
    } finally {
      await cleanup();
      await rm(dirname(table), { recursive: true, force: true });
    }
  }, 30_000);

  test("every worker runs with the supervisor's runtime flags; a second supervisor on their port exits 1 instead of joining them", async () => {
    const { gateway, cleanup } = await supervise();
    try {
      // Everything after the executable's name, which the supervisor spells as a full path.
      const args = async (pid: number) =>
        (await Bun.file(`/proc/${pid}/cmdline`).text()).split("\0").slice(1);
      const supervisorArgs = await args(gateway.process.pid);
      expect(supervisorArgs.length).toBeGreaterThan(1);
      for (const entry of listening(gateway)) expect(await args(entry.pid as number)).toEqual(supervisorArgs);
      // Before: its workers opened the port for sharing too, and took part of the first gateway's connections.
      const { code, stdout, stderr } = await runUntilExit(
        runtime,
        { JWT_SECRET: TEST_SECRET, WORKERS: "2", HOST: "127.0.0.1", PORT: String(gateway.port) },
        10_000,
      );
      expect(code).toBe(1);
      expect(stderr).toStartWith(`cannot listen on 127.0.0.1:${gateway.port} (HOST, PORT): `);
      const fatal = stdout
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as Record<string, unknown>)
        .find((line) => line.level === "fatal");
      expect(fatal).toMatchObject({ variables: ["HOST", "PORT"], port: gateway.port });
      expect(String(fatal?.msg)).toStartWith(`cannot listen on 127.0.0.1:${gateway.port} (HOST, PORT): `);
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

  test("SIGQUIT to the supervisor drains every worker: records queued while Kafka is down are flushed, even once the supervisor is killed mid-drain", async () => {
    const topic = await createTopic(`workers-sigquit-${runtime}`);
    const { gateway, cleanup } = await supervise({
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      DRAIN_DELAY_MS: "200",
      DRAIN_TIMEOUT_MS: "30000",
    });
    const ids: string[] = [];
    let brokerStopped = false;
    const drainsEnded = () =>
      gateway.logs.filter((entry) => /^(drain complete|second signal)/.test(String(entry.msg))).length;
    try {
      // Frozen, not stopped (scripts/services pause-kafka): the records stay queued until it is thawed,
      // at once, with no broker restart to wait for (test/e2e/drain.test.ts keeps one across a drain).
      await servicesCommand("pause-kafka");
      brokerStopped = true;
      const ingestToken = await token("acme", ["ingest"]);
      // A connection each: the kernel spreads them over both workers.
      for (let request = 0; request < 10; request++) {
        const records = Array.from({ length: 5 }, (_, index) => ({
          type: "click",
          id: `workers-sigquit-${runtime}-${request}-${index}`,
          data: { element: "b" },
        }));
        const response = await fetch(`${gateway.url}/v1/events?ack=none`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${ingestToken}`,
            "content-type": "application/json",
            connection: "close",
          },
          body: JSON.stringify(records),
        });
        expect(response.status).toBe(202);
        ids.push(...records.map((record) => record.id));
      }
      // Before: SIGQUIT's default action ended the supervisor at once; its workers were left to drain orphaned.
      gateway.process.kill("SIGQUIT");
      await until(
        () => gateway.logs.filter((entry) => entry.msg === "drain started").length === 2,
        10_000,
        "both workers draining",
      );
      // The supervisor alone (an OOM kill): before, its workers took its end for a second signal and exited
      // 1 at once, every queued record lost; they finish the drain they had, as orphans. Mid-drain: none
      // has ended yet (the broker is frozen), so what follows is the orphans' doing.
      expect(drainsEnded()).toBe(0);
      process.kill(gateway.process.pid, "SIGKILL");
      await gateway.process.exited;
      await servicesCommand("resume-kafka");
      brokerStopped = false;
      await until(() => drainsEnded() === 2, 20_000, "both drains ended");
    } finally {
      if (brokerStopped) await servicesCommand("resume-kafka");
      await cleanup();
    }
    const drains = gateway.logs.filter((entry) => entry.msg === "drain started");
    expect(drains.map((entry) => entry.signal)).toEqual(["SIGQUIT", "SIGQUIT"]);
    expect(gateway.logs.filter((entry) => entry.msg === "drain complete: exiting")).toHaveLength(2);
    const messages = await readTopic(topic, ids.length, 20_000);
    const inKafka = new Set(messages.map((message) => (JSON.parse(message.value) as { id: string }).id));
    expect(ids.filter((id) => !inKafka.has(id))).toEqual([]);
  }, 120_000);

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
