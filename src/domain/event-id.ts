/**
 * Event ids are `<epoch>-<partition>-<offset>`, the offset zero-padded so ids
 * of one channel increase both numerically and as strings. The epoch names one
 * life of the fan-out log (a Kafka topic incarnation, or one process for the
 * in-process bus): a client that sees a different epoch knows the history was
 * reset rather than that it missed a gap it can fill.
 *
 * A position before a partition's first offset (nothing was ever written to
 * it) has the offset `-1`: `<epoch>-<partition>--1`. It is no event's id but a
 * valid `since` (every event of the partition comes after it), and it sorts
 * before every id of its partition, as a string too ('-' < '0').
 */
export interface EventPosition {
  epoch: string;
  partition: number;
  offset: bigint;
}

const OFFSET_DIGITS = 16;
const ID_PATTERN = /^([A-Za-z0-9]{1,32})-(\d{1,6})-(-1|\d{1,20})$/;
/** The offset of a position before a partition's first message. */
export const BEFORE_FIRST_OFFSET = -1n;

export function formatEventId(position: EventPosition): string {
  const offset =
    position.offset === BEFORE_FIRST_OFFSET ? "-1" : position.offset.toString().padStart(OFFSET_DIGITS, "0");
  return `${position.epoch}-${position.partition}-${offset}`;
}

/** Whether `id` has an event id's shape (a position, or a `since` a client may send). */
export function isEventId(id: string): boolean {
  return ID_PATTERN.test(id);
}

export function parseEventId(id: string): EventPosition | undefined {
  const match = ID_PATTERN.exec(id);
  if (!match) return undefined;
  return { epoch: match[1] as string, partition: Number(match[2]), offset: BigInt(match[3] as string) };
}
