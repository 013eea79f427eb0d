/** One Kafka record value per event: the record's fields, its `data` and `ts` exactly as sent. */
export function recordValue(record: EventRecord): string {
  // type, channel and tenant match patterns without characters that need escaping.
  let value = `{"id":${JSON.stringify(record.id)},"type":"${record.type}"`;
  if (record.tsJson !== undefined) value += `,"ts":${record.tsJson}`;
  if (record.channel !== undefined) value += `,"channel":"${record.channel}"`;
  if (record.key !== undefined) value += `,"key":${JSON.stringify(record.key)}`;
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
