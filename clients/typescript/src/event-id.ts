/**
 * Gateway event ids are `<epoch>-<partition>-<offset>` with the offset
 * zero-padded: within one epoch and channel they increase as strings. A new
 * epoch is a new history (a recreated topic, a restarted embedded bus).
 * The offset `-1` is the position before a partition's first event (the
 * gateway's `lastEventId` for a channel on a partition nothing was written to).
 */
const ID_PATTERN = /^(.+)-(\d+)-(-1|\d+)$/;

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
