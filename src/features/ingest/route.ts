import { GatewayError, type RecordErrorCode } from "../../domain/errors.ts";
import { channelAllowed, type Principal } from "../../domain/principal.ts";
import type { EventRecord } from "../../domain/record.ts";
import { authorizedCaller, type CallerChecks } from "../../http/caller.ts";
import { type Idempotency, idempotencyKeyOf, idempotencyScope } from "../../http/idempotency.ts";
import { json, jsonText } from "../../http/reply.ts";
import type { RequestBodies } from "../../http/request-bodies.ts";
import { type TraceContext, traceContextOf } from "../../http/trace-context.ts";
import { Deadlines, isoNow } from "../../lib/time.ts";
import type { Metrics } from "../../metrics/metrics.ts";
import type { Admission, RateLimitFields } from "../../ports/admission.ts";
import type { Route } from "../../ports/route.ts";
import type { SchemaValidator } from "../../ports/schemas.ts";
import { type RecordQueue, RecordsRefused, type RefusedRecord, type SinkMessage } from "../../ports/sink.ts";
import type { HttpReply, HttpRequest } from "../../ports/transport.ts";
import {
  decodeBody,
  decompress,
  type RawRecord,
  type RecordMembers,
  readableMediaType,
  sentAs,
} from "./body.ts";
import { binaryCloudEvent } from "./cloudevents.ts";
import {
  type ClaimedIds,
  claimRecordIds,
  type DedupCandidate,
  type RecordDedup,
  recordIdKey,
} from "./dedup.ts";
import { type Normalized, normalizeRecord, REJECT_REASON } from "./record.ts";
import { RecordMessage, RecordValues } from "./record-value.ts";

export interface IngestOptions {
  topic: string;
  dlqTopic: string | undefined;
  maxBodyBytes: number;
  maxRecords: number;
  ackTimeoutMs: number;
  /** The scope a record with a `channel` needs (INGEST_CHANNEL_SCOPE): `ingest`, which every record has, or `publish`. */
  channelScope: "ingest" | "publish";
}

export interface IngestDependencies extends CallerChecks {
  admission: Pick<Admission, "request" | "events">;
  /** Requests with an Idempotency-Key run through it. */
  idempotency: Pick<Idempotency, "run">;
  schemas: SchemaValidator;
  queue: RecordQueue;
  /** Bounds the bodies being received at once. */
  bodies: Pick<RequestBodies, "read">;
  metrics: Metrics;
  /** Per-record deduplication by id, for the tenants that asked for it. */
  dedup: RecordDedup;
  /**
   * Hands accepted records with a `channel` to the fan-out (once they are
   * acknowledged, or queued with `?ack=none`), with the request's trace
   * context and their Kafka messages (each record's `data` lies in its
   * message's value bytes). Settles (never rejects) once the fan-out copies
   * are acknowledged or failed; undefined when no record has a channel.
   */
  fanOut(
    records: EventRecord[],
    trace: TraceContext | undefined,
    messages: readonly RecordMessage[],
  ): Promise<void> | undefined;
}

interface RecordError {
  index: number;
  reason: string;
  code: RecordErrorCode;
}

/** With the request's trace context (W3C), when it sent a valid one, so consumers can continue the trace. */
export function sinkHeaders(record: EventRecord, trace: TraceContext | undefined): SinkMessage["headers"] {
  const headers: SinkMessage["headers"] = {
    tenant: record.tenant,
    type: record.type,
    "content-type": "application/json",
  };
  if (trace !== undefined) {
    headers.traceparent = trace.traceparent;
    if (trace.tracestate !== undefined) headers.tracestate = trace.tracestate;
  }
  return headers;
}

/** Ends the 202's wait for fan-out copies Kafka has not acknowledged in time (they stay queued). */
/** The deadline passed after the records were written, while their fan-out copies were not acknowledged. */
const COPIES_LATE = new Error("fan-out copies not acknowledged in time");

/** A request waiting for its answer: what it does once its records are written (unset once it no longer waits), and what they were. */
interface AnswerWaiting {
  onWritten:
    | ((refused: readonly RefusedRecord[]) => readonly RefusedRecord[] | Promise<readonly RefusedRecord[]>)
    | undefined;
  written: readonly RefusedRecord[] | undefined;
}

/**
 * The answer's deadline passed: after the write, only the fan-out copies are
 * late (`COPIES_LATE`); before it, the request is (`late`), and the write
 * goes on unseen by it, keeping nothing of it.
 */
function pastTheDeadline(waiting: AnswerWaiting, late: () => GatewayError): () => Error {
  return () => {
    if (waiting.written !== undefined) return COPIES_LATE;
    waiting.onWritten = undefined;
    return late();
  };
}

/** `refused` once `copies` settled, either way (a closure of its own: one made in the route would keep it). */
function settledAs(
  copies: Promise<void>,
  refused: readonly RefusedRecord[],
): Promise<readonly RefusedRecord[]> {
  return copies.then(
    () => refused,
    () => refused,
  );
}

const hasChannel = (record: EventRecord): boolean => record.channel !== undefined;

/**
 * `delivered`, then what `waiting.onWritten` makes of it while set. This and
 * `pastTheDeadline` are made here, not in the route: a closure there would
 * keep the request's body and records for as long as Kafka takes, however late.
 */
function whileWaited(
  delivered: Promise<readonly RefusedRecord[]>,
  waiting: AnswerWaiting,
): Promise<readonly RefusedRecord[]> {
  return delivered.then((refused) => {
    const onWritten = waiting.onWritten;
    return onWritten === undefined ? refused : onWritten(refused);
  });
}

/**
 * A record with a `channel` is also fanned out to that channel's subscribers:
 * by default on the `ingest` scope alone (the SPEC's record has a `channel`,
 * and its route asks for `ingest`), with INGEST_CHANNEL_SCOPE=publish only
 * with the `publish` scope too. A token limited to channel patterns (the
 * `channels` claim) sends only to those, as it publishes only to them.
 */
function channelRefusal(
  principal: Principal,
  channel: string | undefined,
  scope: IngestOptions["channelScope"],
): string | undefined {
  if (channel === undefined) return undefined;
  if (!principal.scopes.has(scope)) return `"channel" needs a token with scope ${scope}`;
  if (!channelAllowed(principal, channel)) return `channel ${channel} is not allowed for this token`;
  return undefined;
}

/** POST /v1/events: authenticate, rate limit, validate, queue for Kafka, answer when acknowledged. */
export function ingestRoute(options: IngestOptions, deps: IngestDependencies): Route {
  // Every request waits for its acknowledgement with the same time limit: one timer for all of them.
  const acknowledgements = new Deadlines(options.ackTimeoutMs);
  /**
   * The headers of the last records without trace context, frozen: the next
   * request of the same tenant and type shares them, so the sinks, which
   * serialise and measure a headers object once per run of it (the local
   * log's line, the record sizes), do that once per run of such requests.
   */
  let untraced: SinkMessage["headers"] | undefined;
  const headersOf = (record: EventRecord, trace: TraceContext | undefined): SinkMessage["headers"] => {
    if (trace !== undefined) return sinkHeaders(record, trace);
    if (untraced?.tenant !== record.tenant || untraced.type !== record.type)
      untraced = Object.freeze(sinkHeaders(record, undefined));
    return untraced;
  };
  const ingest = async (
    request: HttpRequest,
    principal: Principal,
    bytes: Uint8Array,
    /** The body's Content-Encoding; undefined once it is undone. */
    contentEncoding: string | undefined,
  ): Promise<HttpReply> => {
    const rawRecords = await decodeBody(
      bytes,
      request.header("content-type"),
      contentEncoding,
      { maxBytes: options.maxBodyBytes, maxRecords: options.maxRecords },
      binaryCloudEvent(request),
    );
    const trace = traceContextOf(request);
    const admitted = deps.admission.events(principal, rawRecords.length);
    // Paid from the local slice (the usual case): no promise to wait on.
    const rateLimit = admitted instanceof Promise ? await admitted : admitted;
    const ownHeaders = rateLimit?.own;
    const sharedHeaders = rateLimit?.shared;

    const receivedAt = isoNow();
    const accepted: EventRecord[] = [];
    const messages: RecordMessage[] = [];
    const values = new RecordValues(principal.tenant, receivedAt);
    const errors: RecordError[] = [];
    const rejectedRaw: Array<{ raw: string | undefined; reason: string }> = [];
    // Only for a tenant that deduplicates: its accepted records whose ids the client chose.
    const dedupWindowMs = deps.dedup.windowMs(principal.tenant);
    const dedupCandidates: DedupCandidate[] | undefined = dedupWindowMs === undefined ? undefined : [];
    // Batches are mostly of one type: one headers object for a run of records of the same type.
    let headers: SinkMessage["headers"] | undefined;
    // A plain loop, not forEach: no closure over this request's state per request.
    for (let index = 0; index < rawRecords.length; index++) {
      const raw = rawRecords[index] as RawRecord;
      const result: Normalized = raw.ok
        ? normalizeRecord(
            raw.value,
            raw.dataJson,
            raw.tsJson,
            principal.tenant,
            receivedAt,
            deps.schemas,
            raw.exactNumbers,
          )
        : raw;
      let refusal: { reason: string; code: RecordErrorCode };
      if (!result.ok) refusal = result;
      else {
        const channelProblem = channelRefusal(principal, result.record.channel, options.channelScope);
        if (headers?.type !== result.record.type) headers = headersOf(result.record, trace);
        if (raw.ok && raw.headers !== undefined) result.record.headers = raw.headers;
        const record = result.record;
        // A plain record without an id gets one from normalizeRecord (a CloudEvent always has its own).
        const idGenerated = raw.ok && raw.source !== undefined && (raw.value as RecordMembers).id == null;
        const valueLength = values.measure(record, raw.ok ? (raw.dataBytes ?? -1) : -1, idGenerated);
        const message = new RecordMessage(
          options.topic,
          record.key ?? record.tenant,
          record.headers ? { ...headers, ...record.headers } : headers,
          values.length,
          values.length + valueLength,
        );
        if (record.channel !== undefined) values.locateData(message);
        if (channelProblem !== undefined) refusal = { reason: channelProblem, code: "forbidden_channel" };
        else if (!deps.queue.fits(message)) {
          refusal = {
            reason: `record too large for Kafka: at most ${deps.queue.maxRecordBytes} bytes`,
            code: "record_too_large",
          };
        } else {
          if (dedupCandidates !== undefined && raw.ok && (raw.value as { id?: unknown }).id != null)
            dedupCandidates.push({
              position: accepted.length,
              index,
              id: record.id,
              key: recordIdKey(record.id, raw.idSource),
            });
          accepted.push(record);
          messages.push(message);
          values.add(record, valueLength, idGenerated);
          continue;
        }
      }
      errors.push({ index, reason: refusal.reason, code: refusal.code });
      deps.metrics.eventsRejected.inc({ reason: REJECT_REASON[refusal.code] });
      if (options.dlqTopic)
        rejectedRaw.push({ raw: raw.ok ? sentAs(raw) : undefined, reason: refusal.reason });
    }
    if (options.dlqTopic && rejectedRaw.length > 0)
      sendToDeadLetters(options.dlqTopic, principal, rejectedRaw, deps);

    if (accepted.length === 0)
      return json(422, { accepted: 0, rejected: errors.length, errors }, ownHeaders, sharedHeaders);
    const acknowledged = accepted.length;
    const valueBytes = values.write();
    for (const message of messages) message.valueBytes = valueBytes;

    let claimed: ClaimedIds | undefined;
    if (dedupWindowMs !== undefined && dedupCandidates !== undefined && dedupCandidates.length > 0) {
      claimed = await claimRecordIds(
        deps.dedup,
        principal.tenant,
        dedupWindowMs,
        dedupCandidates,
        deps.metrics,
      );
      if (claimed.skip.size > 0) dropSkipped(claimed.skip, accepted, messages);
    }
    const duplicates =
      claimed !== undefined && claimed.duplicates.length > 0 ? claimed.duplicates : undefined;
    const body =
      duplicates === undefined
        ? { accepted: acknowledged, rejected: errors.length, errors }
        : { accepted: acknowledged, rejected: errors.length, errors, duplicates };
    // Every accepted record was a duplicate: nothing to write, and the request claimed no id to keep.
    if (accepted.length === 0) {
      await claimed?.settle(false);
      return json(202, body, ownHeaders, sharedHeaders);
    }

    const ackNone = request.query.get("ack") === "none";
    // With ?ack=none the caller chose speed over confirmation; the queue still retries until delivered.
    const queued = deps.queue.enqueue(messages, ackNone ? "queued" : "acknowledged", principal.tenant);
    // Kafka wrote some records and not the others (refused for good, or their topic held unavailable):
    // a 202 naming those, so a retry resends only them. None written: the refusal answers the request.
    const written = refusedOf(queued, messages.length);
    // Claimed ids count as written once the write succeeded (even past the answer's deadline), else are freed.
    const delivered = claimed === undefined ? written : settleAfter(written, claimed);
    const acceptedReply = acceptedAnswer({
      acknowledged,
      recordCount: rawRecords.length,
      errors,
      duplicates,
      skip: claimed?.skip,
      ownHeaders,
      sharedHeaders,
    });
    /** Counts what was written, and hands it to the fan-out: its copies' acknowledgement, if any is awaited. */
    const wrote = (refused: readonly RefusedRecord[]): Promise<void> | undefined => {
      if (refused.length > 0) {
        const out = new Set(refused.map((record) => record.position));
        for (const record of refused)
          deps.metrics.eventsRejected.inc({ reason: REJECT_REASON[recordErrorCode(record)] });
        dropSkipped(out, accepted, messages);
      }
      deps.metrics.eventsAccepted.inc(accepted.length);
      return deps.fanOut(accepted, trace, messages);
    };
    if (ackNone || !accepted.some(hasChannel)) {
      const refused = ackNone
        ? await delivered
        : await acknowledgements.within(delivered, lateAnswer(delivered, acceptedReply));
      wrote(refused);
      return acceptedReply(refused);
    }
    // The 202 also waits for the subscribers' copies, so the caller's next request (on any instance,
    // a publish too) reaches subscribers after these: answered at once, a copy could land after it.
    // One deadline for both, from the enqueue: the copies get what the write left of it. Past it
    // before the write, the request is late (503); after, it is answered with what was written, as a
    // copy that fails or is late does not fail records already written (live fan-out is best effort).
    const waiting: AnswerWaiting = {
      written: undefined,
      onWritten: (refused) => {
        // Once: then `waiting` keeps nothing of the request, however long the copies take.
        waiting.onWritten = undefined;
        waiting.written = refused;
        const fannedOut = wrote(refused);
        return fannedOut === undefined ? refused : settledAs(fannedOut, refused);
      },
    };
    const refused = await acknowledgements
      .within(whileWaited(delivered, waiting), pastTheDeadline(waiting, lateAnswer(delivered, acceptedReply)))
      .catch((error: unknown) => {
        if (error === COPIES_LATE && waiting.written !== undefined) return waiting.written;
        throw error;
      });
    return acceptedReply(refused);
  };
  return {
    method: "POST",
    path: "/v1/events",
    handler: async (request) => {
      // Usually at once (IP paid locally, token cached): no await before the body's.
      const caller = authorizedCaller(request, "ingest", deps);
      const principal = caller instanceof Promise ? await caller : caller;
      // A 415 needs only the headers: answered before the body is read, as a 401 or 413 (by Content-Length)
      // is, and so is a malformed Idempotency-Key.
      readableMediaType(request.header("content-type"), request.header("content-encoding"));
      const idempotencyKey = idempotencyKeyOf(request);
      const bytes = await deps.bodies.read(request, principal.tenant);
      const contentEncoding = request.header("content-encoding");
      // Without the header (the usual request) nothing is hashed, stored or allocated for it.
      if (idempotencyKey === undefined) return ingest(request, principal, bytes, contentEncoding);
      // The key's fingerprint is over the body as read (a retry compressed otherwise, or not at all, is the
      // same request): inflated once, here, and ingest reads the inflated bytes.
      const decoded =
        contentEncoding === undefined
          ? bytes
          : await decompress(bytes, contentEncoding, options.maxBodyBytes);
      return deps.idempotency.run(request, idempotencyKey, idempotencyScope(principal), decoded, () =>
        ingest(request, principal, decoded, undefined),
      );
    },
  };
}

const NONE_REFUSED: readonly RefusedRecord[] = Object.freeze([]);

/*
 * The functions below outlive the request while Kafka has not settled its records (past the answer's
 * deadline, until the write timeout and its retries): made here rather than in the request's async
 * function, since on Bun a closure made there keeps that function's whole scope, the body, its records
 * and their text included.
 */

/**
 * The records of `sent` messages that Kafka did not write while it wrote the others: none when all were
 * written; the refusal itself when none was.
 */
function refusedOf(queued: Promise<void>, sent: number): Promise<readonly RefusedRecord[]> {
  return queued.then(
    () => NONE_REFUSED,
    (error: unknown) => {
      if (error instanceof RecordsRefused && error.records.length < sent) return error.records;
      throw error;
    },
  );
}

/** The 503 of records not acknowledged in time, carrying the 202 they get once written. */
function lateAnswer(
  delivered: Promise<readonly RefusedRecord[]>,
  acceptedReply: (refused: readonly RefusedRecord[]) => HttpReply,
): () => GatewayError {
  return () => {
    const late = new GatewayError(
      "unavailable",
      "Kafka did not acknowledge in time; the records may still be delivered",
      { "retry-after": "5" },
    );
    // Written later after all: a retry with the same Idempotency-Key gets this 202, not a second write.
    late.eventualAnswer = delivered.then(acceptedReply);
    late.eventualAnswer.catch(() => {});
    return late;
  };
}

/** What the 202 of a request's written records says besides the records Kafka refused. */
interface AcceptedCounts {
  acknowledged: number;
  /** The records of the request, rejected ones included. */
  recordCount: number;
  errors: readonly RecordError[];
  duplicates: ClaimedIds["duplicates"] | undefined;
  /** Positions among the accepted records skipped as duplicates. */
  skip: ReadonlySet<number> | undefined;
  ownHeaders: RateLimitFields["own"] | undefined;
  sharedHeaders: RateLimitFields["shared"] | undefined;
}

/** The 202 once Kafka settled, given the records it refused. */
function acceptedAnswer(counts: AcceptedCounts): (refused: readonly RefusedRecord[]) => HttpReply {
  return (refused) => {
    const { acknowledged, errors, duplicates, ownHeaders, sharedHeaders } = counts;
    if (refused.length > 0) {
      const all = [...errors, ...refusedErrors(refused, counts.recordCount, errors, counts.skip)];
      all.sort((a, b) => a.index - b.index);
      const partial = { accepted: acknowledged - refused.length, rejected: all.length, errors: all };
      return json(
        202,
        duplicates === undefined ? partial : { ...partial, duplicates },
        withRetryAfter(ownHeaders, refused),
        sharedHeaders,
      );
    }
    // All accepted (the usual answer): the same text JSON.stringify makes, without walking the object.
    if (errors.length === 0 && duplicates === undefined)
      return jsonText(
        202,
        `{"accepted":${acknowledged},"rejected":0,"errors":[]}`,
        ownHeaders,
        sharedHeaders,
      );
    const body = { accepted: acknowledged, rejected: errors.length, errors };
    return json(202, duplicates === undefined ? body : { ...body, duplicates }, ownHeaders, sharedHeaders);
  };
}

/** The per-record code of a record the sink did not write. */
function recordErrorCode(record: RefusedRecord): RecordErrorCode {
  const { code } = record.error;
  if (code === "unavailable") return "record_unavailable";
  return code === "record_too_large" ? "record_too_large" : "record_refused";
}

/** `headers` with the latest `Retry-After` of the records to be sent again (none: `headers` as they are). */
function withRetryAfter(
  headers: Readonly<Record<string, string>> | undefined,
  refused: readonly RefusedRecord[],
): Readonly<Record<string, string>> | undefined {
  let seconds = 0;
  for (const { error } of refused) seconds = Math.max(seconds, Number(error.headers["retry-after"] ?? 0));
  return seconds > 0 ? { ...headers, "retry-after": String(seconds) } : headers;
}

/**
 * The answer's errors for records the sink refused, each at its index in the
 * request: the messages hold neither the records rejected up front (`errors`)
 * nor the duplicates skipped (`skip`, positions among the records accepted).
 */
function refusedErrors(
  refused: readonly RefusedRecord[],
  total: number,
  errors: readonly RecordError[],
  skip: ReadonlySet<number> | undefined,
): RecordError[] {
  const rejected = new Set(errors.map((error) => error.index));
  const indexes: number[] = [];
  let position = 0;
  for (let index = 0; index < total; index++) {
    if (rejected.has(index)) continue;
    if (!skip?.has(position)) indexes.push(index);
    position++;
  }
  return refused.map((record) => ({
    index: indexes[record.position] as number,
    reason: record.error.message,
    code: recordErrorCode(record),
  }));
}

/** Removes the records at `skip` (positions) from both arrays, in place, keeping their order. */
function dropSkipped(skip: ReadonlySet<number>, records: EventRecord[], messages: SinkMessage[]): void {
  let kept = 0;
  for (let position = 0; position < records.length; position++) {
    if (skip.has(position)) continue;
    records[kept] = records[position] as EventRecord;
    messages[kept] = messages[position] as SinkMessage;
    kept++;
  }
  records.length = kept;
  messages.length = kept;
}

/**
 * `written`, once the claimed ids are confirmed (it resolved) or released (it
 * rejected, with the same error). When the sink refused some records and
 * wrote the others, the written ones are confirmed (a retry of the whole
 * request must not write them twice) and the refused ones' ids freed (a
 * resend of those, under the same ids, is written).
 */
function settleAfter(
  written: Promise<readonly RefusedRecord[]>,
  claimed: ClaimedIds,
): Promise<readonly RefusedRecord[]> {
  return written.then(
    (refused) =>
      claimed
        .settle(
          true,
          refused.map((record) => record.position),
        )
        .then(() => refused),
    (error: unknown) => {
      void claimed.settle(false);
      throw error;
    },
  );
}

/** Best effort: rejected records go to the dead-letter topic with their reason; never blocks the answer. */
function sendToDeadLetters(
  topic: string,
  principal: Principal,
  rejected: Array<{ raw: string | undefined; reason: string }>,
  deps: IngestDependencies,
): void {
  const rejectedAt = new Date().toISOString();
  const messages = rejected.map(({ raw, reason }) => ({
    topic,
    key: principal.tenant,
    // The record's text as sent is spliced in (see sentAs).
    value: `${JSON.stringify({ tenant: principal.tenant, reason, rejectedAt }).slice(0, -1)},"record":${raw ?? "null"}}`,
    headers: { tenant: principal.tenant, "content-type": "application/json" },
  }));
  // A full queue drops dead letters first: they are diagnostics, not data. They count in the tenant's share.
  deps.queue.enqueue(messages, "queued", principal.tenant).catch(() => {});
}
