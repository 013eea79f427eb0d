/** One Kafka record value per event: the record's fields, its `data` and `ts` exactly as sent. */
export function recordValue(record: EventRecord): string {
  // type, channel and tenant match patterns without characters that need escaping.
  let value = `{"id":${jsonString(record.id)},"type":"${record.type}"`;
  if (record.tsJson !== undefined) value += `,"ts":${record.tsJson}`;
  if (record.channel !== undefined) value += `,"channel":"${record.channel}"`;
  if (record.key !== undefined) value += `,"key":${jsonString(record.key)}`;
  return `${value},"data":${record.dataJson},"tenant":"${record.tenant}","receivedAt":"${record.receivedAt}"}`;
}

/**
 * The record as written to Kafka: the validated client fields plus what the
 * gateway adds. `data` and `ts` are kept as the exact JSON text the client sent.
 */
export interface EventRecord {
  id: string;
  type: string;
  tsJson?: string;
  channel?: string;
  key?: string;
  dataJson: string;
  tenant: string;
  receivedAt: string;
  /** Kafka headers of its own beside tenant, type and content-type (a CloudEvent's `ce_*` attributes). */
  headers?: Record<string, string>;
}

/**
 * `text` as JSON.stringify writes it: quoted as is when nothing in it needs
 * an escape (control characters, `"`, `\\`, lone surrogates), which holds for
 * generated ids and nearly every id and key sent, without JSON.stringify's
 * cost per call; else through JSON.stringify.
 */
export function jsonString(text: string): string {
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    // Surrogates are checked by JSON.stringify: a lone one is escaped, a pair is written as is.
    if (code < 0x20 || code === 0x22 || code === 0x5c || (code >= 0xd800 && code <= 0xdfff))
      return JSON.stringify(text);
  }
  return `"${text}"`;
}
