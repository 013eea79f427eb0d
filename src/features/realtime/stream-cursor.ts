import { isEventId, parseEventId } from "../../domain/event-id.ts";

/**
 * Where an event stream whose channels lie on several partitions of the
 * fan-out topic stands on each of them. An event id names one partition, so
 * the `Last-Event-ID` EventSource sends back could resume only the channels
 * of its last event's partition (the others were `history_gone` at every
 * reconnect). Such a stream's `id:` lines carry this cursor instead: one
 * position per partition, `<id>,<id>,…` ordered by partition, each valid as
 * the `since` of that partition's channels.
 */
export class StreamCursor {
  /** Per partition, the position of the stream there. */
  private readonly positions = new Map<number, string>();

  /** `positions`: event ids (or positions), at most one per partition. */
  constructor(positions: Iterable<string>) {
    for (const position of positions) this.move(position);
  }

  /** The cursor once the event `id` is sent: the text of its `id:` line. */
  after(id: string): string {
    this.move(id);
    return this.toString();
  }

  /** Moves the cursor back to `position` on its partition, if it stands further on there. */
  rewind(position: string): void {
    const parsed = parseEventId(position);
    if (!parsed) return;
    const current = parseEventId(this.positions.get(parsed.partition) ?? "");
    if (!current || current.epoch !== parsed.epoch || parsed.offset < current.offset)
      this.positions.set(parsed.partition, position);
  }

  /** The cursor's text with it no further on than `floors` on their partitions; the cursor itself stays. */
  cappedAt(floors: Iterable<string>): string {
    const capped = new StreamCursor(this.positions.values());
    for (const floor of floors) capped.rewind(floor);
    return capped.toString();
  }

  /** The stream's position on `partition`, if it has one. */
  at(partition: number): string | undefined {
    return this.positions.get(partition);
  }

  toString(): string {
    return [...this.positions.entries()]
      .sort(([a], [b]) => a - b)
      .map(([, id]) => id)
      .join(",");
  }

  private move(id: string): void {
    const position = parseEventId(id);
    if (position) this.positions.set(position.partition, id);
  }
}

/**
 * The positions of a cursor a client sent back (`Last-Event-ID` or `since`):
 * one event id, or several joined by commas, at most `maxPositions` and one
 * per partition; undefined when it is neither.
 */
export function parseCursor(text: string, maxPositions: number): string[] | undefined {
  const positions = text.split(",");
  if (positions.length > maxPositions || !positions.every(isEventId)) return undefined;
  const partitions = new Set(positions.map((id) => parseEventId(id)?.partition));
  return partitions.size === positions.length ? positions : undefined;
}
