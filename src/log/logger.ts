import pino from "pino";

export type Logger = pino.Logger;

/**
 * Structured JSON lines on stdout. The destination writes synchronously so
 * nothing is buffered in the process without bound; the gateway logs notable
 * events, never one line per request.
 */
export function createLogger(
  level: string,
  base: Record<string, unknown>,
  /** Applied to every line before it is written (main.ts masks URL passwords with it). */
  mask?: (line: string) => string,
): Logger {
  return pino(
    {
      level,
      base,
      ...(mask ? { hooks: { streamWrite: mask } } : {}),
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ fd: 1, sync: true }),
  );
}
