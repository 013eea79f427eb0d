/**
 * Gateway event ids are `<epoch>-<partition>-<offset>` with the offset
 * zero-padded: within one epoch and channel they increase as strings. A new
 * epoch is a new history (a recreated topic, a restarted embedded bus).
 * The offset `-1` is the position before a partition's first event (the
 * gateway's `lastEventId` for a channel on a partition nothing was written to).
 */
const ID_PATTERN = /^(.+)-(\d+)-(-1|\d+)$/;

/**
 * A `since` the gateway takes (version 1 of its protocol). It answers any
 * other with a `bad_frame` error that names no channel, so a subscribe that
 * sent one would wait for an answer that never comes.
 */
const POSITION_PATTERN = /^[A-Za-z0-9]{1,32}-\d{1,6}-(-1|\d{1,20})$/;

export function isPosition(id: string): boolean {
  return POSITION_PATTERN.test(id);
}

/**
 * Whether `id` comes after `last`. An id from another epoch counts as after
 * (the history restarted), unless `sameEpochOnly`; ids the client cannot read
 * count as after, so nothing is dropped for a format it does not know.
 */
export function isAfter(id: string, last: string, options: { sameEpochOnly?: boolean } = {}): boolean {
  const a = ID_PATTERN.exec(id);
  const b = ID_PATTERN.exec(last);
  if (!a || !b) return !options.sameEpochOnly;
  if (a[1] !== b[1] || a[2] !== b[2]) return !options.sameEpochOnly;
  const offset = a[3] as string;
  const lastOffset = b[3] as string;
  return offset.length !== lastOffset.length ? offset.length > lastOffset.length : offset > lastOffset;
}
