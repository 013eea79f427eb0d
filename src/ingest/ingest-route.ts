import { channelAllowed, type Principal, requireScope } from "../auth/principal.ts";
import { GatewayError } from "../errors/errors.ts";
import { json } from "../http/reply.ts";
import type { Route } from "../http/router.ts";
import { TOO_DEEP_REASON } from "../json/scan.ts";
import { withDeadline } from "../lifecycle/time.ts";
import type { Metrics } from "../metrics/metrics.ts";
import type { DeliveryQueue } from "../sink/delivery-queue.ts";
import type { SinkMessage } from "../sink/types.ts";
import type { HttpRequest } from "../transport/types.ts";
import type { SchemaRegistry } from "../validation/registry.ts";
import { decodeBody } from "./body.ts";
import { type EventRecord, normalizeRecord, type RejectReason, recordValue } from "./record.ts";

/** The rate limits ingest obeys; each rejects with a 429 GatewayError when over budget. */
export interface IngestAdmission {
  /** Per client IP, before the token is checked or the body read: a client over budget costs nothing more. */
  request(request: HttpRequest): Promise<void>;
  /** Per tenant, `cost` events; resolves with the RateLimit-* headers to answer with. */
  events(principal: Principal, cost: number): Promise<Record<string, string>>;
}

export interface IngestOptions {
  topic: string;
  dlqTopic: string | undefined;
  maxBodyBytes: number;
  maxRecords: number;
  ackTimeoutMs: number;
}

export interface IngestDependencies {
  authenticate(request: HttpRequest): Promise<Principal>;
  admit: IngestAdmission;
  schemas: SchemaRegistry;
  queue: DeliveryQueue;
  metrics: Metrics;
  /** Hands accepted records with a `channel` to the fan-out (after they are queued). */
  fanOut(records: EventRecord[]): void;
}

interface RecordError {
  index: number;
  reason: string;
}

export function toSinkMessage(topic: string, record: EventRecord): SinkMessage {
  return {
    topic,
    key: record.key ?? record.tenant,
    value: recordValue(record),
    headers: { tenant: record.tenant, type: record.type, "content-type": "application/json" },
  };
}

/**
 * A record with a `channel` is also fanned out to subscribers, so it needs
 * what `POST /v1/publish` needs: the `publish` scope and a channel the token allows.
 */
function channelRefusal(principal: Principal, channel: string | undefined): string | undefined {
  if (channel === undefined) return undefined;
  if (!principal.scopes.has("publish")) return `"channel" needs a token with scope publish`;
  if (!channelAllowed(principal, channel)) return `channel ${channel} is not allowed for this token`;
  return undefined;
}

/** POST /v1/events: authenticate, rate limit, validate, queue for Kafka, answer when acknowledged. */
export function ingestRoute(options: IngestOptions, deps: IngestDependencies): Route {
  return {
    method: "POST",
    path: "/v1/events",
    handler: async (request) => {
      await deps.admit.request(request);
      const principal = await deps.authenticate(request);
      requireScope(principal, "ingest");
      const rawRecords = await decodeBody(
        await request.body(),
        request.header("content-type"),
        request.header("content-encoding"),
        { maxBytes: options.maxBodyBytes, maxRecords: options.maxRecords },
      );
      const rateLimitHeaders = await deps.admit.events(principal, rawRecords.length);

      const receivedAt = new Date().toISOString();
      const accepted: EventRecord[] = [];
      const messages: SinkMessage[] = [];
      const errors: RecordError[] = [];
      const rejectedRaw: Array<{ raw: unknown; reason: string }> = [];
      rawRecords.forEach((raw, index) => {
        const result = raw.ok
          ? normalizeRecord(raw.value, raw.dataJson, raw.tsJson, principal.tenant, receivedAt, deps.schemas)
          : {
              ok: false as const,
              reason: raw.reason,
              category: (raw.reason === TOO_DEEP_REASON
                ? "invalid_record"
                : "malformed_json") as RejectReason,
            };
        let refusal: { reason: string; category: RejectReason };
        if (!result.ok) refusal = result;
        else {
          const channelProblem = channelRefusal(principal, result.record.channel);
          const message = toSinkMessage(options.topic, result.record);
          if (channelProblem !== undefined)
            refusal = { reason: channelProblem, category: "forbidden_channel" };
          else if (!deps.queue.fits(message)) {
            refusal = {
              reason: `record too large for Kafka: at most ${deps.queue.maxRecordBytes} bytes`,
              category: "too_large",
            };
          } else {
            accepted.push(result.record);
            messages.push(message);
            return;
          }
        }
        errors.push({ index, reason: refusal.reason });
        deps.metrics.eventsRejected.inc({ reason: refusal.category });
        if (options.dlqTopic)
          rejectedRaw.push({ raw: raw.ok ? raw.value : undefined, reason: refusal.reason });
      });
      if (options.dlqTopic && rejectedRaw.length > 0)
        sendToDeadLetters(options.dlqTopic, principal, rejectedRaw, deps);

      const body = { accepted: accepted.length, rejected: errors.length, errors };
      if (accepted.length === 0) return json(422, body, rateLimitHeaders);

      const ackNone = request.query.get("ack") === "none";
      // With ?ack=none the caller chose speed over confirmation; the queue still retries until delivered.
      const delivered = deps.queue.enqueue(messages, ackNone ? "queued" : "acknowledged");
      if (ackNone) await delivered;
      else
        await withDeadline(
          delivered,
          options.ackTimeoutMs,
          () =>
            new GatewayError(
              "unavailable",
              "Kafka did not acknowledge in time; the records may still be delivered",
              {
                "retry-after": "5",
              },
            ),
        );
      deps.metrics.eventsAccepted.inc(accepted.length);
      deps.fanOut(accepted);
      return json(202, body, rateLimitHeaders);
    },
  };
}

/** Best effort: rejected records go to the dead-letter topic with their reason; never blocks the answer. */
function sendToDeadLetters(
  topic: string,
  principal: Principal,
  rejected: Array<{ raw: unknown; reason: string }>,
  deps: IngestDependencies,
): void {
  const rejectedAt = new Date().toISOString();
  const messages = rejected.map(({ raw, reason }) => ({
    topic,
    key: principal.tenant,
    value: JSON.stringify({ tenant: principal.tenant, reason, rejectedAt, record: raw ?? null }),
    headers: { tenant: principal.tenant, "content-type": "application/json" },
  }));
  // A full queue drops dead letters first: they are diagnostics, not data.
  deps.queue.enqueue(messages, "queued").catch(() => {});
}
