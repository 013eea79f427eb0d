import { recordBytes } from "./record-size.ts";
import type { SinkMessage } from "./types.ts";

/**
 * The dead letter for a record the sink refused for good, in the shape ingest
 * uses for rejected records: `{tenant, reason, rejectedAt, record}`. The
 * record's JSON is embedded as sent (no re-encoding); when the letter would
 * itself be too large, `record` is null and `recordBytes` says how big it was.
 */
export function deadLetterFor(
  message: SinkMessage,
  topic: string,
  reason: string,
  maxRecordBytes: number,
): SinkMessage {
  const tenant = message.headers.tenant ?? message.key;
  const head = `{"tenant":${JSON.stringify(tenant)},"reason":${JSON.stringify(reason)},"rejectedAt":"${new Date().toISOString()}","topic":${JSON.stringify(message.topic)}`;
  const record =
    message.headers["content-type"] === "application/json" ? message.value : JSON.stringify(message.value);
  const letter: SinkMessage = {
    topic,
    key: tenant,
    value: `${head},"record":${record}}`,
    headers: { tenant, "content-type": "application/json" },
  };
  if (recordBytes(letter) <= maxRecordBytes) return letter;
  return { ...letter, value: `${head},"record":null,"recordBytes":${recordBytes(message)}}` };
}
