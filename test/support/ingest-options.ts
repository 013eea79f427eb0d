import type { IngestOptions } from "../../src/features/ingest/route.ts";

/** The ingest route's options as the route's unit tests use them; each test sets what it is about. */
export function ingestOptions(overrides: Partial<IngestOptions> = {}): IngestOptions {
  return {
    topic: "events",
    dlqTopic: undefined,
    maxBodyBytes: 1_000_000,
    maxRecords: 1000,
    ackTimeoutMs: 5000,
    channelScope: "ingest",
    ...overrides,
  };
}
