export interface BackoffOptions {
  /** Delay before the first retry (before jitter). */
  initialDelayMs: number;
  /** Ceiling of the exponential growth. */
  maxDelayMs: number;
}

/**
 * Exponential backoff with "equal jitter": half of the step is fixed and half
 * random, so clients that failed together spread out but never retry at once.
 */
export function backoffDelay(attempt: number, options: BackoffOptions, random = Math.random): number {
  const step = Math.min(options.maxDelayMs, options.initialDelayMs * 2 ** Math.min(attempt, 30));
  return Math.round(step / 2 + random() * (step / 2));
}

/** `Retry-After` as milliseconds from now: delta-seconds or an HTTP date; undefined when absent or invalid. */
export function parseRetryAfter(
  value: string | null | undefined,
  now: number = Date.now(),
): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
