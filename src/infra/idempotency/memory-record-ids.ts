import type { RecordIdStore, RecordIdVerdict } from "../../ports/record-ids.ts";

export interface MemoryRecordIdOptions {
  /** How long a request's claim holds without a confirmation (it died, or Kafka is that slow). */
  pendingMs: number;
  /** Ids kept, and requests' states kept; past it the oldest go first. */
  maxIds: number;
  /** Called when an id or a request's state is evicted before it expired (the bound is too small for the traffic). */
  onEarlyEviction?: () => void;
}

interface Expiring {
  expiresAt: number;
}

/**
 * The embedded default, in this process only, the same model as the Redis
 * store: each id names the request that claimed it, for the window; each
 * request has a state, pending then written, or none once released or
 * expired. Both maps are bounded by count, oldest first out (a Map keeps
 * insertion order). Behind a load balancer a retry that lands on another
 * instance is not recognised: set REDIS_URL to share the ids.
 */
export class MemoryRecordIdStore implements RecordIdStore {
  private readonly ids = new Map<string, Expiring & { claimant: string }>();
  private readonly requests = new Map<string, Expiring & { written: boolean }>();

  constructor(private readonly options: MemoryRecordIdOptions) {}

  claim(
    tenant: string,
    ids: readonly string[],
    claimant: string,
    windowMs: number,
  ): Promise<RecordIdVerdict[]> {
    const now = Date.now();
    this.put(
      this.requests,
      `${tenant}\n${claimant}`,
      { written: false, expiresAt: now + this.options.pendingMs },
      now,
    );
    const verdicts: RecordIdVerdict[] = [];
    for (const id of ids) {
      const key = `${tenant}\n${id}`;
      const owner = this.live(this.ids, key, now);
      const state = owner && this.live(this.requests, `${tenant}\n${owner.claimant}`, now);
      if (state) {
        verdicts.push(state.written ? "seen" : "pending");
        continue;
      }
      this.put(this.ids, key, { claimant, expiresAt: now + windowMs }, now);
      verdicts.push("new");
    }
    return Promise.resolve(verdicts);
  }

  confirm(tenant: string, claimant: string, windowMs: number): Promise<void> {
    const now = Date.now();
    this.put(this.requests, `${tenant}\n${claimant}`, { written: true, expiresAt: now + windowMs }, now);
    return Promise.resolve();
  }

  release(tenant: string, claimant: string): Promise<void> {
    this.requests.delete(`${tenant}\n${claimant}`);
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.ids.clear();
    this.requests.clear();
    return Promise.resolve();
  }

  /** Ids and request states held now (tests). */
  get size(): { ids: number; requests: number } {
    return { ids: this.ids.size, requests: this.requests.size };
  }

  private live<T extends Expiring>(map: Map<string, T>, key: string, now: number): T | undefined {
    const entry = map.get(key);
    return entry !== undefined && entry.expiresAt > now ? entry : undefined;
  }

  private put<T extends Expiring>(map: Map<string, T>, key: string, entry: T, now: number): void {
    map.delete(key);
    map.set(key, entry);
    while (map.size > this.options.maxIds) {
      const oldest = map.entries().next();
      if (oldest.done) break;
      const [oldestKey, oldestEntry] = oldest.value;
      map.delete(oldestKey);
      if (oldestEntry.expiresAt > now) this.options.onEarlyEviction?.();
    }
  }
}
