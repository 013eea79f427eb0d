import { msUntil, sleep, withDeadline } from "../lib/time.ts";
import type { Logger } from "../log/logger.ts";
import type { DrainHandlers, Module } from "../ports/module.ts";
import type { RunningServer } from "../ports/transport.ts";

export interface DrainStep {
  name: string;
  /**
   * `deadline` (epoch ms) is when the drain's budget, counted from the signal,
   * runs out for the steps: each step gets what the earlier ones left.
   */
  run: (deadline: number) => Promise<void> | void;
}

export interface DrainPlanInputs {
  modules: Module[];
  server: RunningServer;
  /** Whatever counts requests in flight and answers them (the router). */
  requests: { whenIdle(): Promise<void>; closeConnectionsAfterReplies(): void };
  drainDelayMs: number;
  log: Logger;
}

/**
 * The drain, in order: every module turns unready and each HTTP reply from
 * then on closes its connection (a keep-alive client, or the load balancer's
 * pool, moves to a new connection after an answer, instead of finding an idle
 * one cut under a request it just sent); the load balancer gets
 * DRAIN_DELAY_MS to notice; the listener closes; modules disconnect their
 * long-lived connections; in-flight requests finish (bounded by the deadline,
 * so the flush still runs and reports); modules flush what they accepted;
 * then every module frees its resources, the last created first.
 */
export function drainPlan({ modules, server, requests, drainDelayMs, log }: DrainPlanInputs): DrainStep[] {
  const phase = (name: string, handler: keyof DrainHandlers): DrainStep => ({
    name,
    run: async (deadline) => {
      await Promise.all(modules.map((module) => module.drain?.[handler]?.(deadline)));
    },
  });
  return [
    phase("mark unhealthy", "unready"),
    { name: "close connections after their replies", run: () => requests.closeConnectionsAfterReplies() },
    { name: "wait for the load balancer", run: () => sleep(drainDelayMs) },
    { name: "stop listening", run: () => server.stopListening() },
    phase("disconnect websockets", "disconnect"),
    {
      name: "finish in-flight requests",
      run: (deadline) =>
        withDeadline(
          requests.whenIdle(),
          msUntil(deadline),
          () => new Error("requests still in flight at the drain deadline"),
        ),
    },
    phase("flush the queue", "flush"),
    {
      name: "release resources",
      run: async (deadline) => {
        const closing = [...modules].reverse().map(async (module) => {
          try {
            await module.close?.(deadline);
          } catch (error) {
            log.warn({ err: error, module: module.name }, "module failed to close");
          }
        });
        await Promise.all(closing);
        log.info("resources released");
      },
    },
  ];
}
