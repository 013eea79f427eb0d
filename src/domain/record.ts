/**
 * The record as written to Kafka: the validated client fields plus what the
 * gateway adds. `data` and `ts` are kept as the exact JSON text the client sent.
 * Its Kafka value's layout: features/ingest/record-value.ts.
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
