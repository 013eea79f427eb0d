/** Who watches a channel: subject → open connections (WebSockets and event streams) subscribed to it. */
export type PresenceMembers = ReadonlyMap<string, number>;

/**
 * Shares each instance's presence with the others (Redis). The feature keeps
 * this instance's members and tells the store when a channel's changed; the
 * store writes in the background (never one round trip per message) and
 * answers for every instance at once.
 */
export interface PresenceStore {
  /** This instance's members of `channelKey` changed (an empty map: none left). */
  changed(channelKey: string, members: PresenceMembers): void;
  /** Members across every live instance; rejects when the store cannot answer. */
  members(channelKey: string): Promise<PresenceMembers>;
  close(): Promise<void>;
}
