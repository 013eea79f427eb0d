import { gunzip } from "node:zlib";
import { GatewayError } from "../errors/errors.ts";

/** One item of a request body: parsed JSON, or why its NDJSON line could not be parsed. */
export type RawRecord = { ok: true; value: unknown } | { ok: false; reason: string };

export interface BodyLimits {
  /** Limit on the decoded (decompressed) body, to stop gzip bombs. */
  maxBytes: number;
  maxRecords: number;
}

const JSON_TYPES = new Set(["application/json"]);
const NDJSON_TYPES = new Set(["application/x-ndjson", "application/ndjson", "application/jsonl"]);

/**
 * Turns a request body into raw records: one JSON object, a JSON array of
 * objects, or NDJSON (one object per line). A body that is not JSON at all is
 * a 400; an NDJSON line that does not parse rejects only that record.
 */
export async function decodeBody(
  bytes: Uint8Array,
  contentType: string | undefined,
  contentEncoding: string | undefined,
  limits: BodyLimits,
): Promise<RawRecord[]> {
  const mediaType = (contentType ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  const ndjson = NDJSON_TYPES.has(mediaType);
  if (!ndjson && !JSON_TYPES.has(mediaType) && !mediaType.endsWith("+json")) {
    throw new GatewayError(
      "unsupported_media_type",
      "use Content-Type application/json or application/x-ndjson",
    );
  }
  const text = new TextDecoder().decode(await decompress(bytes, contentEncoding, limits.maxBytes));
  const records = ndjson ? parseNdjson(text) : parseJson(text);
  if (records.length === 0) throw new GatewayError("bad_request", "the body holds no records");
  if (records.length > limits.maxRecords) {
    throw new GatewayError("payload_too_large", `at most ${limits.maxRecords} records per request`);
  }
  return records;
}

async function decompress(
  bytes: Uint8Array,
  encoding: string | undefined,
  maxBytes: number,
): Promise<Uint8Array> {
  const name = (encoding ?? "identity").trim().toLowerCase();
  if (name === "identity" || name === "") return bytes;
  if (name !== "gzip" && name !== "x-gzip") {
    throw new GatewayError("unsupported_media_type", `Content-Encoding ${name} is not supported; use gzip`);
  }
  return new Promise((resolve, reject) => {
    gunzip(bytes, { maxOutputLength: maxBytes }, (error, result) => {
      if (!error) resolve(result);
      else if ((error as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
        reject(new GatewayError("payload_too_large", `decompressed body exceeds ${maxBytes} bytes`));
      } else reject(new GatewayError("bad_request", "body is not valid gzip"));
    });
  });
}

function parseJson(text: string): RawRecord[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new GatewayError("malformed_json", `malformed JSON: ${(error as Error).message}`);
  }
  if (Array.isArray(parsed)) return parsed.map((value) => ({ ok: true, value }));
  if (parsed !== null && typeof parsed === "object") return [{ ok: true, value: parsed }];
  throw new GatewayError("malformed_json", "the body must be a JSON object or an array of objects");
}

function parseNdjson(text: string): RawRecord[] {
  const records: RawRecord[] = [];
  let parsedAny = false;
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      records.push({ ok: true, value: JSON.parse(line) });
      parsedAny = true;
    } catch {
      records.push({ ok: false, reason: "malformed JSON line" });
    }
  }
  if (records.length > 0 && !parsedAny)
    throw new GatewayError("malformed_json", "no line of the body is valid JSON");
  return records;
}
