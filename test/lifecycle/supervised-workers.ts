/**
 * A WORKERS supervisor of two stand-in workers, for test/lifecycle/supervisor.test.ts.
 * Each worker says it listens; worker 0 exits 0 on a drain signal, worker 1 ignores
 * every signal but SIGKILL, as one whose event loop is stuck would, and with
 * BLOCK_WORKER=1 blocks its event loop once it said so. Both exit when the
 * supervisor is gone. STUCK_AFTER_MS is the supervisor's `stuckAfterMs`, RELAY_BACKLOG_MAX_BYTES its
 * `relayBacklogMaxBytes`; with PUBLISH_FLOOD=1 worker 0 publishes through the relay without pause.
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
    relayBacklogMaxBytes: Number(process.env.RELAY_BACKLOG_MAX_BYTES ?? 64 * 1024 * 1024),
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
  // Publishes as a gateway worker's embedded bus does, 64 KiB a message, until the supervisor is gone.
  if (worker === "0" && process.env.PUBLISH_FLOOD === "1") {
    const dataJson = JSON.stringify("x".repeat(64 * 1024));
    let ref = 0;
    setInterval(() => {
      for (let n = 0; n < 8; n++)
        process.send?.(
          {
            type: "fanout",
            messages: [{ tenant: "acme", channel: "c", dataJson, ts: 0 }],
            worker,
            ref: ref++,
          },
          undefined,
          undefined,
          () => {},
        );
    }, 10);
  }
}
