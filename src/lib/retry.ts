import type { Logger } from "../log/logger.ts";

/**
 * Runs `start` until it succeeds, every `intervalMs`, so a dependency that is
 * down when the gateway boots (Kafka, say) is picked up once it comes back
 * instead of crash-looping the process. `stop` ends the attempts.
 */
export function startWithRetry(name: string, start: () => Promise<void>, log: Logger, intervalMs = 2000) {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  let failures = 0;
  const attempt = () => {
    start().then(
      () => {
        if (failures > 0) log.info({ component: name, failures }, "started after retries");
      },
      (error) => {
        failures++;
        if (failures === 1)
          log.warn({ err: error, component: name }, "start failed; retrying in the background");
        if (!stopped) {
          timer = setTimeout(attempt, intervalMs);
          timer.unref?.();
        }
      },
    );
  };
  attempt();
  return {
    stop: () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
