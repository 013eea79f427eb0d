import { CHANNEL_PATTERN } from "../../domain/channel.ts";
import type { EventRecord } from "../../domain/record.ts";
import { uuidv7 } from "../../lib/uuid7.ts";
import type { SchemaValidator } from "../../ports/schemas.ts";

/** Bounded set of reasons used as a metric label. */
export type RejectReason =
  | "malformed_json"
  | "invalid_record"
  | "unknown_type"
  | "schema"
  | "forbidden_channel"
  | "too_large";

export type Normalized =
  | { ok: true; record: EventRecord }
  | { ok: false; reason: string; category: RejectReason };

const TYPE_PATTERN = /^[A-Za-z0-9._-]{1,128}$/;
const MAX_ID_LENGTH = 128;
const MAX_KEY_LENGTH = 1024;

function invalid(reason: string): Normalized {
  return { ok: false, reason, category: "invalid_record" };
}

/**
 * Checks one record's envelope, validates its `data` against the schema of
 * its `type`, and returns the record to produce. Unknown top-level fields are
 * dropped so a client can never set `tenant` or `receivedAt` itself.
 * `dataJson`/`tsJson` are the exact texts of `raw.data`/`raw.ts` in the body.
 */
export function normalizeRecord(
  raw: unknown,
  dataJson: string | undefined,
  tsJson: string | undefined,
  tenant: string,
  receivedAt: string,
  schemas: SchemaValidator,
): Normalized {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw))
    return invalid("a record must be a JSON object");
  const input = raw as Record<string, unknown>;
  const { type, id, ts, channel, key, data } = input;
  if (typeof type !== "string" || !TYPE_PATTERN.test(type)) {
    return invalid('"type" must be a string of letters, digits, ".", "_" or "-" (at most 128)');
  }
  if (id !== undefined && (typeof id !== "string" || id === "" || id.length > MAX_ID_LENGTH)) {
    return invalid(`"id" must be a non-empty string of at most ${MAX_ID_LENGTH} characters`);
  }
  if (ts !== undefined && !(typeof ts === "string" || (typeof ts === "number" && Number.isFinite(ts)))) {
    return invalid('"ts" must be a number or a string');
  }
  if (channel !== undefined && (typeof channel !== "string" || !CHANNEL_PATTERN.test(channel))) {
    return invalid('"channel" must match [A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}');
  }
  if (key !== undefined && (typeof key !== "string" || key === "" || key.length > MAX_KEY_LENGTH)) {
    return invalid(`"key" must be a non-empty string of at most ${MAX_KEY_LENGTH} characters`);
  }
  if (data === null || typeof data !== "object" || Array.isArray(data))
    return invalid('"data" must be a JSON object');
  const validation = schemas.validate(type, data);
  if (!validation.ok) {
    return {
      ok: false,
      reason: validation.reason,
      category: validation.reason.startsWith("unknown type") ? "unknown_type" : "schema",
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
