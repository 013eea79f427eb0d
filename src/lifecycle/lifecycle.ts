import type { Logger } from "../log/logger.ts";
import type { DrainStep } from "./drain-plan.ts";

/**
 * The signals that drain the gateway. SIGQUIT too: `docker stop` sends it to
 * an image whose STOPSIGNAL is SIGQUIT (nginx-style), some process managers
 * stop with it, and Ctrl-\ sends it; its default action ended the process at
 * once, dropping every record accepted and not yet in Kafka.
 */
export const DRAIN_SIGNALS = ["SIGTERM", "SIGINT", "SIGQUIT"] as const;

/** Records accepted and not yet delivered to the sink, and their bytes. */
export interface Undelivered {
  records: number;
  bytes: number;
}

export interface LifecycleOptions {
  drainTimeoutMs: number;
  log: Logger;
  exit: (code: number) => void;
}

/** Kept back from the steps' deadline so the process still exits before the hard deadline. */
const EXIT_RESERVE_MS = 500;

/**
 * Graceful shutdown. The first SIGTERM/SIGINT/SIGQUIT starts the drain clock and runs
 * the drain steps in order, each with the same deadline; a step that fails is
 * logged and the next ones still run. The process exits 0 when every step
 * succeeded, 1 when one failed (say, records left undelivered) or the drain
 * overran DRAIN_TIMEOUT_MS; a second signal exits 1 at once. Exiting before the
 * drain ends, either way, logs how many accepted records are lost with it
 * (`lost`, `lostBytes`: the fields of the flush's own line at its deadline). A signal before
 * the gateway serves (a start waiting on Kafka or a schema source) exits 0 at
 * once: nothing was accepted, so nothing is left to drain.
 */
export class Lifecycle {
  private draining = false;
  private steps: DrainStep[] | undefined;
  private undelivered: () => Undelivered = () => ({ records: 0, bytes: 0 });

  constructor(private readonly options: LifecycleOptions) {}

  /** Installed before the start's slow parts: left to the runtime, a signal then ended the process unlogged with 143. */
  installSignalHandlers(): void {
    for (const signal of DRAIN_SIGNALS) {
      process.on(signal, () => this.onSignal(signal));
    }
  }

  /**
   * The gateway listens: from now on the first signal runs these steps, in
   * order; `undelivered` says what an exit before they end would lose.
   */
  serving(steps: DrainStep[], undelivered: () => Undelivered): void {
    this.steps = steps;
    this.undelivered = undelivered;
  }

  onSignal(signal: string): void {
    const { log, exit } = this.options;
    if (this.draining) {
      const { records, bytes } = this.undelivered();
      const lost = { signal, lost: records, lostBytes: bytes };
      if (records > 0) log.error(lost, "second signal: exiting with records undelivered");
      else log.warn(lost, "second signal: exiting now");
      exit(1);
      return;
    }
    this.drain(signal);
  }

  /**
   * Starts the drain as a first signal does, unless it runs already: for a
   * cause that is nobody asking to exit at once (a WORKERS supervisor gone,
   * killed, say, by the OOM killer during the drain it had passed on), where
   * a second signal would have dropped every record the drain was flushing.
   */
  drainUnlessDraining(cause: string): void {
    if (!this.draining) this.drain(cause);
  }

  private drain(signal: string): void {
    const { log, exit, drainTimeoutMs } = this.options;
    this.draining = true;
    const steps = this.steps;
    if (steps === undefined) {
      log.info({ signal }, "signal before listening: exiting, nothing accepted yet");
      exit(0);
      return;
    }
    const deadline = Date.now() + drainTimeoutMs - Math.min(EXIT_RESERVE_MS, drainTimeoutMs / 10);
    log.info({ signal, drainTimeoutMs }, "drain started");
    const hardDeadline = setTimeout(() => {
      const { records, bytes } = this.undelivered();
      log.error({ drainTimeoutMs, lost: records, lostBytes: bytes }, "drain timed out: exiting");
      exit(1);
    }, drainTimeoutMs);
    this.runSteps(steps, deadline).then((complete) => {
      clearTimeout(hardDeadline);
      if (complete) log.info("drain complete: exiting");
      else log.error("drain incomplete: exiting with 1");
      exit(complete ? 0 : 1);
    });
  }

  /** Runs every step; resolves whether all of them succeeded. */
  private async runSteps(steps: DrainStep[], deadline: number): Promise<boolean> {
    let complete = true;
    for (const step of steps) {
      const started = Date.now();
      try {
        await step.run(deadline);
        this.options.log.info({ step: step.name, ms: Date.now() - started }, "drain step done");
      } catch (error) {
        complete = false;
        this.options.log.error({ err: error, step: step.name }, "drain step failed");
      }
    }
    return complete;
  }
}

/**
 * Signals that mean nothing to the gateway, logged and otherwise ignored:
 * left to the runtimes, SIGHUP and SIGUSR2 (and SIGUSR1 on Bun) ended the
 * process at once, with no drain, and SIGUSR1 on Node opened its debugger
 * with a plain-text banner on stderr. Settings are read at start only, so
 * there is nothing to reload. A handler also replaces the ignoring that
 * nohup sets up: draining on SIGHUP would stop a gateway started with nohup
 * when its terminal closes.
 */
export function ignoreUnusedSignals(log: Logger): void {
  for (const signal of ["SIGHUP", "SIGUSR1", "SIGUSR2"] as const)
    process.on(signal, () =>
      log.warn(
        { signal },
        `${signal} ignored: settings are read at start; SIGTERM, SIGINT or SIGQUIT drains the gateway`,
      ),
    );
}
