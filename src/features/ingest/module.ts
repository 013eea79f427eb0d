import type { Principal } from "../../domain/principal.ts";
import type { EventRecord } from "../../domain/record.ts";
import type { Idempotency } from "../../http/idempotency.ts";
import type { RequestBodies } from "../../http/request-bodies.ts";
import type { TraceContext } from "../../http/trace-context.ts";
import type { Logger } from "../../log/logger.ts";
import type { Metrics } from "../../metrics/metrics.ts";
import type { Admission } from "../../ports/admission.ts";
import type { FanoutBus } from "../../ports/fanout-bus.ts";
import type { Module } from "../../ports/module.ts";
import type { SchemaValidator } from "../../ports/schemas.ts";
import type { RecordQueue } from "../../ports/sink.ts";
import type { HttpRequest } from "../../ports/transport.ts";
import type { RecordDedup } from "./dedup.ts";
import type { RecordMessage } from "./record-value.ts";
import { type IngestOptions, ingestRoute } from "./route.ts";

export interface IngestModuleDependencies {
  authenticate(request: HttpRequest): Principal | Promise<Principal>;
  admission: Pick<Admission, "request" | "events">;
  idempotency: Pick<Idempotency, "run">;
  dedup: RecordDedup;
  schemas: SchemaValidator;
  queue: RecordQueue;
  bodies: Pick<RequestBodies, "read">;
  bus: FanoutBus;
  metrics: Metrics;
  log: Logger;
}

const hasChannel = (record: EventRecord): boolean => record.channel !== undefined;

/** POST /v1/events; accepted records with a `channel` also go to the fan-out bus. */
export function createIngestModule(options: IngestOptions, deps: IngestModuleDependencies): Module {
  const fanOut = (
    records: EventRecord[],
    trace: TraceContext | undefined,
    messages: readonly RecordMessage[],
  ): Promise<void> | undefined => {
    // Most requests' records have no channel: no clock read, fan-out call or promise for them.
    if (!records.some(hasChannel)) return undefined;
    // Live fan-out is best effort: the records themselves are already in the events topic.
    // One time for the request's records: the fan-out bus then writes their shared headers once.
    return deps.bus
      .publishRecords(records, Date.now(), trace, messages)
      .catch((error) => deps.log.debug({ err: error }, "fan-out of ingested records skipped"));
  };
  return {
    name: "ingest",
    routes: [
      ingestRoute(options, {
        authenticate: deps.authenticate,
        admission: deps.admission,
        idempotency: deps.idempotency,
        dedup: deps.dedup,
        schemas: deps.schemas,
        queue: deps.queue,
        bodies: deps.bodies,
        metrics: deps.metrics,
        fanOut,
      }),
    ],
  };
}
