import { expect, test } from "bun:test";
import pino from "pino";
import { drainPlan } from "../../src/lifecycle/drain-plan.ts";
import type { Module } from "../../src/ports/module.ts";
import type { RunningServer } from "../../src/ports/transport.ts";

test("phases run in order across modules, and modules close last-created first, by the deadline", async () => {
  const events: string[] = [];
  const module = (name: string): Module => ({
    name,
    drain: {
      unready: () => void events.push(`${name}:unready`),
      disconnect: () => void events.push(`${name}:disconnect`),
      flush: () => void events.push(`${name}:flush`),
    },
    close: (deadline) => void events.push(`${name}:close by ${deadline}`),
  });
  const server = { stopListening: () => void events.push("server:stop") } as unknown as RunningServer;
  const requests = {
    whenIdle: async () => void events.push("requests:idle"),
    closeConnectionsAfterReplies: () => void events.push("requests:close connections"),
  };
  const steps = drainPlan({
    modules: [module("a"), module("b")],
    server,
    requests,
    drainDelayMs: 0,
    log: pino({ level: "silent" }),
  });
  const deadline = Date.now() + 5000;
  for (const step of steps) await step.run(deadline);
  expect(events).toEqual([
    "a:unready",
    "b:unready",
    // Before the load balancer's delay: keep-alive clients move off while the listener still takes them.
    "requests:close connections",
    "server:stop",
    "a:disconnect",
    "b:disconnect",
    "requests:idle",
    "a:flush",
    "b:flush",
    // With the drain's deadline: a close that waits on the network (the last spans' export) gives up by then.
    `b:close by ${deadline}`,
    `a:close by ${deadline}`,
  ]);
});

test("a flush that fails fails its step; a module that fails to close does not stop the others", async () => {
  const closed: string[] = [];
  const steps = drainPlan({
    modules: [
      { name: "sink", drain: { flush: async () => Promise.reject(new Error("3 records undelivered")) } },
      { name: "broken", close: () => Promise.reject(new Error("boom")) },
      { name: "ok", close: () => void closed.push("ok") },
    ],
    server: { stopListening: () => {} } as unknown as RunningServer,
    requests: { whenIdle: async () => {}, closeConnectionsAfterReplies: () => {} },
    drainDelayMs: 0,
    log: pino({ level: "silent" }),
  });
  const byName = new Map(steps.map((step) => [step.name, step]));
  await expect(byName.get("flush the queue")?.run(Date.now() + 1000)).rejects.toThrow("undelivered");
  await byName.get("release resources")?.run(Date.now() + 1000);
  expect(closed).toEqual(["ok"]);
});

test("in-flight requests are waited for only until the deadline", async () => {
  const steps = drainPlan({
    modules: [],
    server: { stopListening: () => {} } as unknown as RunningServer,
    requests: { whenIdle: () => new Promise(() => {}), closeConnectionsAfterReplies: () => {} },
    drainDelayMs: 0,
    log: pino({ level: "silent" }),
  });
  const started = Date.now();
  const step = steps.find((candidate) => candidate.name === "finish in-flight requests");
  // whenIdle never resolves: rejecting at all is the deadline at work; the bound is generous on purpose.
  await expect(step?.run(Date.now() + 100)).rejects.toThrow("in flight");
  expect(Date.now() - started).toBeLessThan(5000);
});
