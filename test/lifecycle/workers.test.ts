import { afterEach, expect, test } from "bun:test";
import {
  isWorker,
  tellSupervisorListening,
  WORKER_ENV,
  watchSupervisor,
} from "../../src/lifecycle/workers.ts";

const saved = process.env[WORKER_ENV];
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
  let orphaned = 0;
  const onOrphaned = () => void orphaned++;
  watchSupervisor(onOrphaned);
  expect(process.listenerCount("disconnect")).toBe(before + 1);
  process.emit("disconnect");
  expect(orphaned).toBe(1);
  process.removeListener("disconnect", onOrphaned);
});

test("a worker tells its supervisor it listens only over an open channel: none, or a closed one, is no error", () => {
  const sent: unknown[] = [];
  const saved = { send: process.send, connected: process.connected };
  try {
    process.env[WORKER_ENV] = "0";
    process.send = ((message: unknown) => sent.push(message) > 0) as typeof process.send;
    Object.defineProperty(process, "connected", { value: false, configurable: true, writable: true });
    tellSupervisorListening();
    expect(sent).toEqual([]);
    Object.defineProperty(process, "connected", { value: true, configurable: true, writable: true });
    tellSupervisorListening();
    expect(sent).toEqual([{ type: "listening" }]);
    delete process.env[WORKER_ENV];
    tellSupervisorListening();
    expect(sent).toHaveLength(1);
  } finally {
    process.send = saved.send;
    Object.defineProperty(process, "connected", {
      value: saved.connected,
      configurable: true,
      writable: true,
    });
  }
});
