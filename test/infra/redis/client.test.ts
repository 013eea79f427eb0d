import { afterEach, describe, expect, test } from "bun:test";
import { createServer, type Socket } from "node:net";
import type { Redis } from "ioredis";
import { connectRedis, stalledAfterMs } from "../../../src/infra/redis/client.ts";
import { waitUntil } from "../../support/wait.ts";

/**
 * A Redis that answers (INFO for the ready check, +OK to anything else) until
 * `freeze()`, then reads every command and answers none, its connections
 * left open: a Redis stopped (SIGSTOP), busy in a long script, or behind a
 * path that drops packets.
 */
async function hangingRedis(): Promise<{
  url: string;
  freeze(): void;
  connections(): number;
  close(): void;
}> {
  let frozen = false;
  let connections = 0;
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let pending = Buffer.alloc(0);
    socket.on("data", (chunk) => {
      if (frozen) return;
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        const command = readCommand(pending);
        if (!command) break;
        pending = pending.subarray(command.length);
        const name = command.args[0]?.toLowerCase();
        if (name === "info") {
          const info = "# Server\r\nredis_version:7.0.0\r\nloading:0\r\n";
          socket.write(`$${info.length}\r\n${info}\r\n`);
        } else socket.write("+OK\r\n");
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `redis://127.0.0.1:${port}`,
    freeze: () => {
      frozen = true;
    },
    connections: () => connections,
    close: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

/** One RESP command (an array of bulk strings) at the start of `bytes`, with its length; undefined until it is whole. */
function readCommand(bytes: Buffer): { args: string[]; length: number } | undefined {
  let at = 0;
  const line = () => {
    const end = bytes.indexOf("\r\n", at);
    if (end < 0) return undefined;
    const text = bytes.subarray(at, end).toString();
    at = end + 2;
    return text;
  };
  const head = line();
  if (head === undefined) return undefined;
  const count = Number(head.slice(1));
  const args: string[] = [];
  for (let index = 0; index < count; index++) {
    const size = line();
    if (size === undefined) return undefined;
    const length = Number(size.slice(1));
    if (bytes.length < at + length + 2) return undefined;
    args.push(bytes.subarray(at, at + length).toString());
    at += length + 2;
  }
  return { args, length: at };
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/**
 * The command timeout of the clients below: the most that still gives the 1 s stall bound. An
 * answered command must come back within it, and a loop turn runs due timers before the answers that
 * arrived: at 50 ms, one pause of a loaded machine timed an answered command out.
 */
const COMMAND_TIMEOUT_MS = 250;

async function readyClient(url: string, commandTimeoutMs: number): Promise<Redis> {
  const redis = connectRedis(url, commandTimeoutMs);
  cleanups.push(() => redis.disconnect());
  await waitUntil(() => redis.status === "ready", "the client to be ready");
  return redis;
}

describe("connectRedis", () => {
  test("a stall bound of 4 command timeouts, at least 1 s", () => {
    expect(stalledAfterMs(250)).toBe(1000);
    expect(stalledAfterMs(50)).toBe(1000);
    expect(stalledAfterMs(2000)).toBe(8000);
  });

  test("a Redis that answers nothing with its connection open: the unanswered commands are dropped with the connection, not kept", async () => {
    const hanging = await hangingRedis();
    cleanups.push(hanging.close);
    const redis = await readyClient(hanging.url, COMMAND_TIMEOUT_MS);
    expect(await redis.get("answered")).toBe("OK");
    hanging.freeze();
    const errors: string[] = [];
    redis.on("error", (error: Error) => errors.push(error.message));
    // Each times out for its caller after the command timeout, and ioredis keeps it queued until Redis answers it.
    let failed = 0;
    for (let index = 0; index < 1000; index++)
      redis.get(`key-${index}`).catch(() => {
        failed++;
      });
    await waitUntil(() => failed === 1000, "every command to time out for its caller");
    expect(redis.commandQueue.length).toBeGreaterThan(0);
    // Past the bound (1 s here) the connection goes: nothing is held for the Redis that does not answer.
    await waitUntil(() => redis.commandQueue.length === 0, "the unanswered commands to be freed", 5000);
    expect(errors).toContain("Redis answered nothing for 1000 ms; reconnecting");
    // And it reconnects by itself (the hanging Redis accepts the connection).
    await waitUntil(() => hanging.connections() >= 2, "a new connection", 5000);
  });

  test("a Redis that answers, with idle pauses between commands, keeps its connection", async () => {
    const hanging = await hangingRedis();
    cleanups.push(hanging.close);
    const redis = await readyClient(hanging.url, COMMAND_TIMEOUT_MS);
    for (let round = 0; round < 12; round++) {
      expect(await redis.get(`key-${round}`)).toBe("OK");
      await Bun.sleep(100);
    }
    expect(hanging.connections()).toBe(1);
    expect(redis.status).toBe("ready");
  });
});
