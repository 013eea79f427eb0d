import type { IngestDependencies, IngestOptions } from "../../src/features/ingest/route.ts";
import { RequestBodies } from "../../src/http/request-bodies.ts";
import { createMetrics } from "../../src/metrics/metrics.ts";

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

/**
 * The ingest route's dependencies for its unit tests: no limits, no Idempotency-Key store, every record
 * valid and queued at once, no deduplication or fan-out; each test sets what it is about.
 */
export function ingestDependencies(
  overrides: Partial<IngestDependencies> & Pick<IngestDependencies, "authenticate">,
): IngestDependencies {
  return {
    admission: { request: () => undefined, events: () => undefined },
    idempotency: { run: async () => ({ status: 500, body: "" }) },
    schemas: { validate: () => ({ ok: true }) },
    queue: { maxRecordBytes: 1_000_000, fits: () => true, enqueue: async () => {} },
    dedup: { windowMs: () => undefined, store: undefined as never },
    fanOut: () => undefined,
    ...overrides,
    // Made only when not given: each holds state of its own (prom-client's registry, the bodies' budget).
    bodies: overrides.bodies ?? new RequestBodies(64 * 1024 * 1024, 1024 * 1024),
    metrics: overrides.metrics ?? createMetrics("test", "0"),
  };
}
