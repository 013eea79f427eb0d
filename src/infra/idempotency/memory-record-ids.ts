import type { RecordIdStore, RecordIdVerdict } from "../../ports/record-ids.ts";

export interface MemoryRecordIdOptions {
  /** How long a claim holds without a confirmation (its request died, or Kafka is that slow). */
  pendingMs: number;
  /** Ids kept; past it the oldest go first (an id evicted inside its window is no longer recognised). */
  maxIds: number;
  /** Called when an id is evicted before its window ended (the bound is too small for the traffic). */
  onEarlyEviction?: () => void;
}

interface Entry {
  /** The claiming request, or undefined once written. */
  claimant: string | undefined;
  expiresAt: number;
}

/**
 * The embedded default: record ids kept in this process only, bounded by
 * count, oldest first out (a Map keeps insertion order; a confirmed id is
 * re-inserted at the young end). Behind a load balancer a retry that lands on
 * another instance is not recognised: set REDIS_URL to share the ids.
 */
export class MemoryRecordIdStore implements RecordIdStore {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly options: MemoryRecordIdOptions) {}

  claim(tenant: string, ids: readonly string[], claimant: string): Promise<RecordIdVerdict[]> {
    const now = Date.now();
    const verdicts: RecordIdVerdict[] = [];
    for (const id of ids) {
      const key = `${tenant}\n${id}`;
      const entry = this.entries.get(key);
      if (entry !== undefined && entry.expiresAt > now) {
        verdicts.push(entry.claimant === undefined ? "seen" : "pending");
        continue;
      }
      this.put(key, { claimant, expiresAt: now + this.options.pendingMs }, now);
      verdicts.push("new");
    }
    return Promise.resolve(verdicts);
  }

  confirm(tenant: string, ids: readonly string[], claimant: string, windowMs: number): Promise<void> {
    const now = Date.now();
    for (const id of ids) {
      const key = `${tenant}\n${id}`;
      const entry = this.entries.get(key);
      // Another request's claim (this one's expired meanwhile) is left alone: that request confirms it.
      if (entry !== undefined && entry.claimant !== claimant && entry.claimant !== undefined) continue;
      this.put(key, { claimant: undefined, expiresAt: now + windowMs }, now);
    }
    return Promise.resolve();
  }

  release(tenant: string, ids: readonly string[], claimant: string): Promise<void> {
    for (const id of ids) {
      const key = `${tenant}\n${id}`;
      if (this.entries.get(key)?.claimant === claimant) this.entries.delete(key);
    }
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.entries.clear();
    return Promise.resolve();
  }

  /** Ids held now (tests). */
  get size(): number {
    return this.entries.size;
  }

  private put(key: string, entry: Entry, now: number): void {
    this.entries.delete(key);
    this.entries.set(key, entry);
    while (this.entries.size > this.options.maxIds) {
      const oldest = this.entries.entries().next();
      if (oldest.done) break;
      const [oldestKey, oldestEntry] = oldest.value;
      this.entries.delete(oldestKey);
      if (oldestEntry.expiresAt > now) this.options.onEarlyEviction?.();
    }
  }
}
