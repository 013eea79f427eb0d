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
 * The embedded default: answers kept in this process only, bounded by count
 * and bytes, oldest first out (a Map keeps insertion order; a completed entry
 * is re-inserted at the young end). Behind a load balancer a retry that lands
 * on another instance is not recognised: set REDIS_URL to share the keys.
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;

  constructor(private readonly options: MemoryIdempotencyOptions) {}

  claim(id: string, fingerprint: string): Promise<IdempotencyClaim> {
    const now = Date.now();
    const entry = this.entries.get(id);
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
    this.remove(id);
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.entries.clear();
    this.bytes = 0;
    return Promise.resolve();
  }

  /** Keys and bytes held now (tests, metrics). */
  size(): { keys: number; bytes: number } {
    return { keys: this.entries.size, bytes: this.bytes };
  }

  private put(id: string, entry: Entry): void {
    this.remove(id);
    this.entries.set(id, entry);
    this.bytes += entry.bytes;
    while (this.entries.size > this.options.maxKeys || this.bytes > this.options.maxBytes) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.remove(oldest.value);
    }
  }

  private remove(id: string): void {
    const entry = this.entries.get(id);
    if (entry === undefined) return;
    this.entries.delete(id);
    this.bytes -= entry.bytes;
  }
}
