import { tenantOfTopic, topicHash } from "../../domain/channel.ts";

/**
 * Which channels this instance reads fan-out messages for: those a local
 * connection watches (WebSocket subscribers, event streams, sockets holding
 * live events back during a replay) and those watched or asked for within
 * the last `keepIdleMs` (a client that reconnects soon resumes from memory).
 * Every other channel's messages are skipped before their value is decoded,
 * and its resume and history are read from the fan-out log.
 *
 * Past `maxRecent` channels kept without a watcher, the tenant keeping the
 * most loses its least recently left one: a tenant touching many channels'
 * history pushes out its own, never the channels other tenants' clients are
 * about to resume from memory.
 *
 * Keys are channel topics, `t/<tenant>/<channel>`. `onStart` runs when a channel
 * becomes wanted, `onEnd` when it stops being wanted: the owner of the
 * channel's history starts and frees it there.
 */
export class Interest {
  /** Local watchers per channel. */
  private readonly watched = new Map<string, number>();
  /** Channels no longer watched but kept a while, with when that began; oldest first. */
  private readonly recent = new Map<string, number>();
  /** The same channels per tenant, oldest first; a tenant with none has no entry. */
  private readonly recentByTenant = new Map<string, Set<string>>();
  /** Wanted channels per topic hash (`topicHash`): the reader's byte-level filter ahead of `wants`. */
  private readonly hashes = new Map<number, number>();

  constructor(
    private readonly options: {
      /** How long a channel stays wanted after its last watcher left or its last history request. */
      keepIdleMs: number;
      /** Channels kept without a watcher at most; past it the least recently left is dropped. */
      maxRecent: number;
    },
    private readonly onStart: (key: string) => void,
    private readonly onEnd: (key: string) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** Is any local connection, or recent local interest, asking for this channel? */
  wants(key: string): boolean {
    return this.watched.has(key) || this.recent.has(key);
  }

  /** False when no wanted channel's topic hashes to `hash`: the record can be skipped unread. */
  mayWant(hash: number): boolean {
    return this.hashes.has(hash);
  }

  /** A local watcher joined (1) or left (-1) the channel. */
  change(key: string, delta: 1 | -1): void {
    const count = (this.watched.get(key) ?? 0) + delta;
    if (count > 0) {
      if (!this.watched.has(key) && !this.forgetRecent(key)) this.started(key);
      this.watched.set(key, count);
      return;
    }
    if (!this.watched.delete(key)) return;
    this.keepRecent(key);
  }

  /** A request for the channel's history: kept for a while, so the next one is served from memory. */
  touch(key: string): void {
    if (this.watched.has(key)) return;
    if (!this.forgetRecent(key)) this.started(key);
    this.keepRecent(key);
  }

  /** Frees the channels idle for longer than `keepIdleMs`. */
  sweep(): void {
    const horizon = this.now() - this.options.keepIdleMs;
    for (const [key, since] of this.recent) {
      if (since > horizon) break;
      this.forgetRecent(key);
      this.ended(key);
    }
  }

  /** Channels wanted now (watched or recent). */
  get size(): number {
    return this.watched.size + this.recent.size;
  }

  private started(key: string): void {
    const hash = topicHash(key);
    this.hashes.set(hash, (this.hashes.get(hash) ?? 0) + 1);
    this.onStart(key);
  }

  private ended(key: string): void {
    const hash = topicHash(key);
    const count = (this.hashes.get(hash) ?? 0) - 1;
    if (count > 0) this.hashes.set(hash, count);
    else this.hashes.delete(hash);
    this.onEnd(key);
  }

  private keepRecent(key: string): void {
    this.recent.set(key, this.now());
    const tenant = tenantOfTopic(key);
    const kept = this.recentByTenant.get(tenant);
    if (kept) kept.add(key);
    else this.recentByTenant.set(tenant, new Set([key]));
    while (this.recent.size > this.options.maxRecent) {
      const oldest = this.oldestOfLargest(tenant);
      this.forgetRecent(oldest);
      this.ended(oldest);
    }
  }

  /** Drops a channel from those kept without a watcher; false when it was not kept. */
  private forgetRecent(key: string): boolean {
    if (!this.recent.delete(key)) return false;
    const tenant = tenantOfTopic(key);
    const kept = this.recentByTenant.get(tenant);
    if (kept?.delete(key) && kept.size === 0) this.recentByTenant.delete(tenant);
    return true;
  }

  /**
   * The least recently left channel of the tenant keeping the most: the
   * tenant that just added one when it keeps at least the average (a flood
   * by one tenant, with no scan), otherwise found by a scan.
   */
  private oldestOfLargest(writer: string): string {
    let largest = this.recentByTenant.get(writer);
    if (!largest || largest.size * this.recentByTenant.size < this.recent.size) {
      for (const kept of this.recentByTenant.values())
        if (!largest || kept.size > largest.size) largest = kept;
    }
    return (largest as Set<string>).values().next().value as string;
  }
}
