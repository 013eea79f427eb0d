/**
 * Event ids are `<epoch>-<partition>-<offset>`, the offset zero-padded so ids
 * of one channel increase both numerically and as strings. The epoch names one
 * life of the fan-out log (a Kafka topic incarnation, or one process for the
 * in-process bus): a client that sees a different epoch knows the history was
 * reset rather than that it missed a gap it can fill.
 */
export interface EventPosition {
  epoch: string;
  partition: number;
  offset: bigint;
}

const OFFSET_DIGITS = 16;
const ID_PATTERN = /^([A-Za-z0-9]{1,32})-(\d{1,6})-(\d{1,20})$/;

export function formatEventId(position: EventPosition): string {
  return `${position.epoch}-${position.partition}-${position.offset.toString().padStart(OFFSET_DIGITS, "0")}`;
}

export function parseEventId(id: string): EventPosition | undefined {
  const match = ID_PATTERN.exec(id);
  if (!match) return undefined;
  return { epoch: match[1] as string, partition: Number(match[2]), offset: BigInt(match[3] as string) };
}
