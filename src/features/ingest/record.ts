import { CHANNEL_PATTERN } from "../../domain/channel.ts";
import type { RecordErrorCode } from "../../domain/errors.ts";
import type { EventRecord } from "../../domain/record.ts";
import { uuidv7 } from "../../lib/uuid7.ts";
import type { ExactNumbers, SchemaValidator } from "../../ports/schemas.ts";

/** Bounded set of reasons used as a metric label. */
export type RejectReason =
  | "malformed_json"
  | "invalid_record"
  | "unknown_type"
  | "schema"
  | "forbidden_channel"
  | "too_large"
  | "unavailable";

export type Normalized =
  | { ok: true; record: EventRecord }
  | { ok: false; reason: string; code: RecordErrorCode };

const TYPE_PATTERN = /^[A-Za-z0-9._-]{1,128}$/;
const MAX_ID_LENGTH = 128;
const MAX_KEY_LENGTH = 1024;
/**
 * An unpaired surrogate (in `u` mode a pair is one code point, which `\p{Cs}`
 * does not match): no UTF-8 spells it, so the Kafka key (and the id kept by
 * per-record deduplication in Redis) would be U+FFFD, the same bytes for
 * every such key, while the value's JSON still says `"\ud800"`.
 */
const LONE_SURROGATE = /\p{Cs}/u;

function invalid(reason: string): Normalized {
  return { ok: false, reason, code: "invalid_record" };
}

/** The metric label of each code (the label set predates the codes and stays as dashboards know it). */
export const REJECT_REASON: Record<RecordErrorCode, RejectReason> = {
  malformed_json: "malformed_json",
  too_deep: "invalid_record",
  duplicate_key: "invalid_record",
  invalid_record: "invalid_record",
  unknown_type: "unknown_type",
  schema_invalid: "schema",
  forbidden_channel: "forbidden_channel",
  record_too_large: "too_large",
  record_refused: "invalid_record",
  record_unavailable: "unavailable",
};

/**
 * Checks one record's envelope, validates its `data` against the schema of
 * its `type`, and returns the record to produce. Unknown top-level fields are
 * dropped so a client can never set `tenant` or `receivedAt` itself.
 * `dataJson`/`tsJson` are the exact texts of `raw.data`/`raw.ts` in the body;
 * `exactNumbers` those of the numbers in `data` that JSON.parse rounded.
 */
export function normalizeRecord(
  raw: unknown,
  dataJson: string | undefined,
  tsJson: string | undefined,
  tenant: string,
  receivedAt: string,
  schemas: SchemaValidator,
  exactNumbers?: ExactNumbers,
): Normalized {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw))
    return invalid("a record must be a JSON object");
  const input = raw as Record<string, unknown>;
  const { type, data } = input;
  // An optional member sent as null is absent: what a client writes for "no value" (Python's None).
  const id = input.id ?? undefined;
  const ts = input.ts ?? undefined;
  const channel = input.channel ?? undefined;
  const key = input.key ?? undefined;
  if (typeof type !== "string" || !TYPE_PATTERN.test(type)) {
    return invalid('"type" must be a string of letters, digits, ".", "_" or "-" (at most 128)');
  }
  if (id !== undefined && (typeof id !== "string" || id === "" || id.length > MAX_ID_LENGTH)) {
    return invalid(`"id" must be a non-empty string of at most ${MAX_ID_LENGTH} characters`);
  }
  if (typeof id === "string" && LONE_SURROGATE.test(id))
    return invalid('"id" must be well-formed Unicode: it holds a lone surrogate, which UTF-8 cannot carry');
  if (ts !== undefined && !(typeof ts === "string" || (typeof ts === "number" && Number.isFinite(ts)))) {
    // A number JSON.parse read as Infinity (1e400): its text is finite, but no timestamp that large is meant.
    return invalid('"ts" must be a string or a number of at most about 1.8e308 (a double)');
  }
  if (channel !== undefined && (typeof channel !== "string" || !CHANNEL_PATTERN.test(channel))) {
    return invalid('"channel" must match [A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}');
  }
  if (key !== undefined && (typeof key !== "string" || key === "" || key.length > MAX_KEY_LENGTH)) {
    return invalid(`"key" must be a non-empty string of at most ${MAX_KEY_LENGTH} characters`);
  }
  if (typeof key === "string" && LONE_SURROGATE.test(key))
    return invalid('"key" must be well-formed Unicode: it holds a lone surrogate, which UTF-8 cannot carry');
  if (data === null || typeof data !== "object" || Array.isArray(data))
    return invalid('"data" must be a JSON object');
  const validation = schemas.validate(type, data, exactNumbers);
  if (!validation.ok) {
    return {
      ok: false,
      reason: validation.reason,
      code: validation.reason.startsWith("unknown type") ? "unknown_type" : "schema_invalid",
    };
  }
  const record: EventRecord = {
    id: (id as string | undefined) ?? uuidv7(),
    type,
    dataJson: dataJson ?? JSON.stringify(data),
    tenant,
    receivedAt,
  };
  if (ts !== undefined) record.tsJson = tsJson ?? JSON.stringify(ts);
  if (channel !== undefined) record.channel = channel;
  if (key !== undefined) record.key = key;
  return { ok: true, record };
}
