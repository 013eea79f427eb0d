/**
 * A WORKERS supervisor of two stand-in workers, for test/lifecycle/supervisor.test.ts.
 * Each worker says it listens; worker 0 exits 0 on a drain signal, worker 1 ignores
 * every signal but SIGKILL, as one whose event loop is stuck would, and with
 * BLOCK_WORKER=1 blocks its event loop once it said so. Both exit when the
 * supervisor is gone. STUCK_AFTER_MS is the supervisor's `stuckAfterMs`.
 */
import { DRAIN_SIGNALS } from "../../src/lifecycle/lifecycle.ts";
import { superviseWorkers, tellSupervisorListening, WORKER_ENV } from "../../src/lifecycle/workers.ts";
import { createLogger } from "../../src/log/logger.ts";

const worker = process.env[WORKER_ENV];
if (worker === undefined) {
  superviseWorkers({
    workers: 2,
    drainTimeoutMs: Number(process.env.DRAIN_TIMEOUT_MS),
    log: createLogger("info", { pid: process.pid }),
    stores: undefined,
    stuckAfterMs: Number(process.env.STUCK_AFTER_MS ?? 30_000),
  });
} else {
  for (const signal of DRAIN_SIGNALS) process.on(signal, () => worker === "0" && process.exit(0));
  process.on("disconnect", () => process.exit(0));
  setInterval(() => {}, 60_000);
  tellSupervisorListening();
  createLogger("info", { pid: process.pid }).info({ worker }, "listening");
  // Blocked without spinning: no event of this process is handled again.
  if (worker === "1" && process.env.BLOCK_WORKER === "1")
    setTimeout(() => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0), 100);
}
