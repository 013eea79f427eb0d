import type { Logger } from "../log/logger.ts";

export interface DrainStep {
  name: string;
  run: () => Promise<void> | void;
}

export interface LifecycleOptions {
  drainTimeoutMs: number;
  log: Logger;
  /** Steps run in order on the first signal. */
  steps: DrainStep[];
  exit: (code: number) => void;
}

/**
 * Graceful shutdown. The first SIGTERM/SIGINT runs the drain steps in order
 * and exits 0; if they overrun DRAIN_TIMEOUT_MS the process exits 1; a second
 * signal exits 1 at once.
 */
export class Lifecycle {
  private draining = false;

  constructor(private readonly options: LifecycleOptions) {}

  installSignalHandlers(): void {
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      process.on(signal, () => this.onSignal(signal));
    }
  }

  onSignal(signal: string): void {
    const { log, exit } = this.options;
    if (this.draining) {
      log.warn({ signal }, "second signal: exiting now");
      exit(1);
      return;
    }
    this.draining = true;
    log.info({ signal, drainTimeoutMs: this.options.drainTimeoutMs }, "drain started");
    const deadline = setTimeout(() => {
      log.error({ drainTimeoutMs: this.options.drainTimeoutMs }, "drain timed out: exiting");
      exit(1);
    }, this.options.drainTimeoutMs);
    this.runSteps().then(
      () => {
        clearTimeout(deadline);
        log.info("drain complete: exiting");
        exit(0);
      },
      (error) => {
        clearTimeout(deadline);
        log.error({ err: error }, "drain failed: exiting");
        exit(1);
      },
    );
  }

  private async runSteps(): Promise<void> {
    for (const step of this.options.steps) {
      const started = Date.now();
      await step.run();
      this.options.log.info({ step: step.name, ms: Date.now() - started }, "drain step done");
    }
  }
}
