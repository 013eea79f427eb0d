import { afterEach, expect, test } from "bun:test";
import { GatewayError } from "../../src/domain/errors.ts";
import {
  ensureNothingListens,
  isWorker,
  tellSupervisorListening,
  WORKER_ENV,
  watchSupervisor,
  workerFanoutRelay,
} from "../../src/lifecycle/workers.ts";

const saved = process.env[WORKER_ENV];
/** Whether this process has an open IPC channel to a supervisor, as the tests need it (read-only otherwise). */
const setConnected = (value: boolean) =>
  Object.defineProperty(process, "connected", { value, configurable: true, writable: true });
afterEach(() => {
  if (saved === undefined) delete process.env[WORKER_ENV];
  else process.env[WORKER_ENV] = saved;
});

test("WORKERS=1 serves in this process; above 1 this process supervises, and its children serve", () => {
  delete process.env[WORKER_ENV];
  expect(isWorker(1)).toBe(true);
  expect(isWorker(2)).toBe(false);
  process.env[WORKER_ENV] = "0";
  expect(isWorker(2)).toBe(true);
});

test("a worker drains when its supervisor's IPC channel closes; a process without a supervisor does not listen for that", () => {
  const before = process.listenerCount("disconnect");
  delete process.env[WORKER_ENV];
  watchSupervisor(() => {});
  expect(process.listenerCount("disconnect")).toBe(before);

  process.env[WORKER_ENV] = "1";
  setConnected(true);
  let orphaned = 0;
  const onOrphaned = () => void orphaned++;
  watchSupervisor(onOrphaned);
  expect(process.listenerCount("disconnect")).toBe(before + 1);
  process.emit("disconnect");
  expect(orphaned).toBe(1);
  process.removeListener("disconnect", onOrphaned);
});

test("a worker whose supervisor is gone before it watches (Node emitted 'disconnect' while it loaded its code) drains at once", () => {
  const before = process.listenerCount("disconnect");
  process.env[WORKER_ENV] = "1";
  setConnected(false);
  let orphaned = 0;
  watchSupervisor(() => void orphaned++);
  expect(orphaned).toBe(1);
  expect(process.listenerCount("disconnect")).toBe(before);
});

test("a worker tells its supervisor it listens only over an open channel: none, or a closed one, is no error", () => {
  const sent: unknown[] = [];
  const saved = { send: process.send, connected: process.connected };
  try {
    process.env[WORKER_ENV] = "0";
    process.send = ((message: unknown) => sent.push(message) > 0) as typeof process.send;
    setConnected(false);
    tellSupervisorListening();
    expect(sent).toEqual([]);
    setConnected(true);
    tellSupervisorListening();
    expect(sent).toEqual([{ type: "listening" }]);
    delete process.env[WORKER_ENV];
    tellSupervisorListening();
    expect(sent).toHaveLength(1);
  } finally {
    process.send = saved.send;
    setConnected(saved.connected);
  }
});

test("a worker's relayed publishes are bounded while the supervisor does not pass them on, and fail as 503s when it is gone", async () => {
  const saved = { send: process.send, connected: process.connected };
  const listeners = { message: process.listeners("message"), disconnect: process.listeners("disconnect") };
  const swallowed: unknown[] = [];
  try {
    process.env[WORKER_ENV] = "0";
    // A supervisor that takes every message and passes none on.
    process.send = (() => true) as typeof process.send;
    setConnected(true);
    const relay = workerFanoutRelay();
    if (!relay) throw new Error("a worker with an IPC channel has a relay");
    const message = { tenant: "acme", channel: "orders", dataJson: "{}", ts: 0 };
    const send = () => relay.send([message]) as Promise<void>;
    const waiting = Array.from({ length: 10_000 }, () =>
      send().catch((error: unknown) => {
        swallowed.push(error);
      }),
    );
    const past = await send().catch((error: unknown) => error);
    expect([(past as GatewayError).code, (past as GatewayError).status]).toEqual(["unavailable", 503]);
    process.emit("disconnect");
    await Promise.all(waiting);
    expect(swallowed).toHaveLength(10_000);
    expect(swallowed.every((error) => error instanceof GatewayError && error.status === 503)).toBe(true);
  } finally {
    process.send = saved.send;
    setConnected(saved.connected);
    for (const listener of process.listeners("message"))
      if (!listeners.message.includes(listener)) process.removeListener("message", listener);
    for (const listener of process.listeners("disconnect"))
      if (!listeners.disconnect.includes(listener)) process.removeListener("disconnect", listener);
  }
});

test("the supervisor's check of its port: free passes; refused while sharing listeners hold it, as a second gateway's workers would join them", async () => {
  const shared = { hostname: "127.0.0.1", reusePort: true, fetch: () => new Response("") };
  const first = Bun.serve({ ...shared, port: 0 });
  const second = Bun.serve({ ...shared, port: first.port });
  try {
    // Before: nothing checked, and a second WORKERS > 1 gateway on the port served half its connections.
    const refused = await ensureNothingListens("127.0.0.1", first.port as number).catch((error) => error);
    expect((refused as NodeJS.ErrnoException).code).toBe("EADDRINUSE");
  } finally {
    first.stop(true);
    second.stop(true);
  }
  await ensureNothingListens("127.0.0.1", first.port as number);
  // Neither the port nor a foreign address is left held.
  const again = Bun.serve({ hostname: "127.0.0.1", port: first.port, fetch: () => new Response("") });
  again.stop(true);
  const foreign = await ensureNothingListens("192.0.2.1", 0).catch((error) => error);
  expect((foreign as NodeJS.ErrnoException).code).toBe("EADDRNOTAVAIL");
});
