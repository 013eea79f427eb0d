/** Who watches a channel: subject → open connections (WebSockets and event streams) subscribed to it. */
export type PresenceMembers = ReadonlyMap<string, number>;

/** A channel's member count, and its first members in subject order. */
export interface PresencePage {
  /** Subjects with at least one connection. */
  total: number;
  /** The first of them in subject order, at most the `limit` asked for. */
  members: PresenceMembers;
}

/**
 * Shares each instance's presence with the others (Redis). The feature keeps
 * this instance's members and tells the store when a channel's changed; the
 * store writes in the background (never one round trip per message) and
 * answers for every instance at once, at a cost bounded by `limit`, never by
 * the channel's size.
 */
export interface PresenceStore {
  /** This instance's members of `channelKey` changed (an empty map: none left). */
  changed(channelKey: string, members: PresenceMembers): void;
  /**
   * Members across every live instance: the total and the first `limit` in
   * subject order; with `onlyIfAll`, no members at all when there are more
   * than `limit` (a crowded channel is then a count, read cheaply). Rejects
   * when the store cannot answer.
   */
  members(channelKey: string, limit: number, onlyIfAll?: boolean): Promise<PresencePage>;
  close(): Promise<void>;
}
