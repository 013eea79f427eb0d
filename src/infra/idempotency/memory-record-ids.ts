import { OwnedEntries } from "../../lib/owned-entries.ts";
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
 * expired. Both are bounded by count, oldest first out; past the bound a
 * tenant over an equal share loses its oldest, so a tenant writing many ids
 * never pushes out a smaller tenant's (whose retries would be written twice).
 * Behind a load balancer a retry that lands on another instance is not
 * recognised: set REDIS_URL to share the ids.
 */
export class MemoryRecordIdStore implements RecordIdStore {
  private readonly ids: OwnedEntries<Expiring & { claimant: string }>;
  private readonly requests: OwnedEntries<Expiring & { written: boolean }>;

  constructor(private readonly options: MemoryRecordIdOptions) {
    const bounds = { maxEntries: options.maxIds, maxWeight: Number.POSITIVE_INFINITY };
    const evicted = (entry: Expiring) => {
      if (entry.expiresAt > Date.now()) this.options.onEarlyEviction?.();
    };
    this.ids = new OwnedEntries<Expiring & { claimant: string }>(bounds, evicted);
    this.requests = new OwnedEntries<Expiring & { written: boolean }>(bounds, evicted);
  }

  claim(
    tenant: string,
    ids: readonly string[],
    claimant: string,
    windowMs: number,
  ): Promise<RecordIdVerdict[]> {
    const now = Date.now();
    this.requests.set(tenant, claimant, { written: false, expiresAt: now + this.options.pendingMs });
    const verdicts: RecordIdVerdict[] = [];
    for (const id of ids) {
      const owner = live(this.ids.get(tenant, id), now);
      const state = owner && live(this.requests.get(tenant, owner.claimant), now);
      if (state) {
        verdicts.push(state.written ? "seen" : "pending");
        continue;
      }
      this.ids.set(tenant, id, { claimant, expiresAt: now + windowMs });
      verdicts.push("new");
    }
    return Promise.resolve(verdicts);
  }

  confirm(tenant: string, claimant: string, windowMs: number): Promise<void> {
    this.requests.set(tenant, claimant, { written: true, expiresAt: Date.now() + windowMs });
    return Promise.resolve();
  }

  release(tenant: string, claimant: string): Promise<void> {
    this.requests.delete(tenant, claimant);
    return Promise.resolve();
  }

  forget(tenant: string, claimant: string, ids: readonly string[]): Promise<boolean> {
    for (const id of ids) if (this.ids.get(tenant, id)?.claimant === claimant) this.ids.delete(tenant, id);
    return Promise.resolve(true);
  }

  close(): Promise<void> {
    this.ids.clear();
    this.requests.clear();
    return Promise.resolve();
  }

  /** Ids and request states held now (tests). */
  get size(): { ids: number; requests: number } {
    return { ids: this.ids.size.entries, requests: this.requests.size.entries };
  }
}

function live<T extends Expiring>(entry: T | undefined, now: number): T | undefined {
  return entry !== undefined && entry.expiresAt > now ? entry : undefined;
}
