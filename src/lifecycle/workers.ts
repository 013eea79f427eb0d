import { type ChildProcess, spawn } from "node:child_process";
import type { Logger } from "../log/logger.ts";

export const WORKER_ENV = "EDGE_GATEWAY_WORKER";

/** True in a process started by `superviseWorkers`, and when WORKERS is 1. */
export function isWorker(workers: number): boolean {
  return workers <= 1 || process.env[WORKER_ENV] !== undefined;
}

/**
 * WORKERS > 1: this process only supervises. It starts that many copies of
 * itself, which all listen on the same port (SO_REUSEPORT: the kernel spreads
 * connections), forwards SIGTERM/SIGINT to them so each drains, restarts one
 * that dies outside a drain, and exits once all have exited (1 if any failed).
 */
export function superviseWorkers(workers: number, log: Logger): void {
  const children = new Set<ChildProcess>();
  let draining = false;
  let failed = false;

  const start = (index: number) => {
    const child = spawn(process.execPath, process.argv.slice(1), {
      env: { ...process.env, [WORKER_ENV]: String(index) },
      stdio: "inherit",
    });
    children.add(child);
    child.on("exit", (code, signal) => {
      children.delete(child);
      if (code !== 0) failed = true;
      if (!draining) {
        log.error({ worker: index, code, signal }, "worker died; restarting it");
        setTimeout(() => start(index), 1000).unref();
        return;
      }
      if (children.size === 0) process.exit(failed ? 1 : 0);
    });
  };

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      draining = true;
      for (const child of children) child.kill(signal);
    });
  }
  for (let index = 0; index < workers; index++) start(index);
  log.info({ workers }, "supervising workers");
}
