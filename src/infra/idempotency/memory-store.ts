import { OwnedEntries } from "../../lib/owned-entries.ts";
import type { IdempotencyClaim, IdempotencyStore, StoredReply } from "../../ports/idempotency.ts";

export interface MemoryIdempotencyOptions {
  /** How long a final answer is kept. */
  windowMs: number;
  /** How long a claim holds without an answer (a request that never finished does not block its key for the window). */
  pendingMs: number;
  maxKeys: number;
  /** Bytes of kept answers (bodies and headers, as UTF-16 length): past it, the oldest go. */
  maxBytes: number;
}

interface Entry {
  fingerprint: string;
  reply: StoredReply | undefined;
  expiresAt: number;
  bytes: number;
}

const CLAIMED: IdempotencyClaim = Object.freeze({ state: "claimed" });
/** A kept entry's cost beyond its answer: key, fingerprint, the entry itself. */
const ENTRY_OVERHEAD_BYTES = 200;

/**
 * The tenant of a key: ids begin with the caller's scope, tenant first
 * (`idempotencyScope`); an id without one is its own owner.
 */
function tenantOf(id: string): string {
  const end = id.indexOf("\n");
  return end < 0 ? id : id.slice(0, end);
}

/**
 * The embedded default: answers kept in this process only, bounded by count
 * and bytes, oldest first out (a completed entry is re-inserted at the young
 * end). Past a bound a tenant over an equal share loses its oldest: a tenant
 * sending many keys pushes out its own, not a smaller tenant's answers, whose retries would
 * then be written twice. Behind a load balancer a retry that lands on another
 * instance is not recognised: set REDIS_URL to share the keys.
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  private readonly entries: OwnedEntries<Entry>;

  constructor(private readonly options: MemoryIdempotencyOptions) {
    this.entries = new OwnedEntries({ maxEntries: options.maxKeys, maxWeight: options.maxBytes });
  }

  claim(id: string, fingerprint: string): Promise<IdempotencyClaim> {
    const now = Date.now();
    const entry = this.entries.get(tenantOf(id), id);
    if (entry !== undefined && entry.expiresAt > now) {
      return Promise.resolve(
        entry.reply
          ? { state: "done", fingerprint: entry.fingerprint, reply: entry.reply }
          : { state: "pending", fingerprint: entry.fingerprint },
      );
    }
    this.put(id, { fingerprint, reply: undefined, expiresAt: now + this.options.pendingMs, bytes: 0 });
    return Promise.resolve(CLAIMED);
  }

  complete(id: string, fingerprint: string, reply: StoredReply): Promise<void> {
    let bytes = ENTRY_OVERHEAD_BYTES + id.length + fingerprint.length + reply.body.length;
    for (const name in reply.headers) bytes += name.length + (reply.headers[name] as string).length;
    this.put(id, { fingerprint, reply, expiresAt: Date.now() + this.options.windowMs, bytes });
    return Promise.resolve();
  }

  release(id: string): Promise<void> {
    this.entries.delete(tenantOf(id), id);
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.entries.clear();
    return Promise.resolve();
  }

  /** Keys and bytes held now (tests, metrics). */
  size(): { keys: number; bytes: number } {
    const { entries, weight } = this.entries.size;
    return { keys: entries, bytes: weight };
  }

  private put(id: string, entry: Entry): void {
    this.entries.set(tenantOf(id), id, entry, entry.bytes);
  }
}
