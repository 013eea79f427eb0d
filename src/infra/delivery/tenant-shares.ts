/** What one tenant holds in the queue: records and bytes accepted and not yet acknowledged. */
export interface TenantHolding {
  readonly tenant: string;
  records: number;
  bytes: number;
}

/** A tenant that asked within the last one or two of these windows counts as sending. */
const WINDOW_MS = 5_000;
/** At most this many tenants are remembered per window; past it the count stays at the bound. */
const MAX_TENANTS_PER_WINDOW = 10_000;
/** Below this fill (of records or of bytes) nobody is refused for their share. */
const PRESSURE = 1 / 2;

/**
 * Fair shares of a bounded queue among the tenants sending to it. While the
 * queue is less than half full anyone gets in, so a single tenant (or one
 * busy tenant among idle ones) can use all of it. Past half, a tenant that
 * already holds records is refused once it would hold more than the queue
 * divided by the tenants that asked in the last 5–10 s, counting those that
 * were refused: the others' requests get in while the queue drains, instead
 * of every tenant getting 503 because one filled it. A tenant holding
 * nothing always gets one request in (the queue's own bounds still apply),
 * so a share smaller than one request cannot lock a tenant out.
 *
 * Memory: one holding per tenant with records queued (freed when its last
 * record leaves) and two sets of names bounded per window.
 */
export class TenantShares {
  private readonly holdings = new Map<string, TenantHolding>();
  private current = new Set<string>();
  private previous = new Set<string>();
  private windowStart = 0;

  constructor(
    private readonly maxRecords: number,
    private readonly maxBytes: number,
  ) {}

  /** Notes that `tenant` asks to queue records now; returns what it holds (empty when nothing). */
  asking(tenant: string, now: number): TenantHolding {
    if (now - this.windowStart >= WINDOW_MS) {
      // A window with nobody asking leaves nobody in the previous one either.
      this.previous = now - this.windowStart >= 2 * WINDOW_MS ? new Set() : this.current;
      this.current = new Set();
      this.windowStart = now;
    }
    if (this.current.size < MAX_TENANTS_PER_WINDOW) this.current.add(tenant);
    return this.holdings.get(tenant) ?? { tenant, records: 0, bytes: 0 };
  }

  /** Whether `holding`'s tenant may not add `records` and `bytes` to a queue holding `queuedRecords` and `queuedBytes`. */
  refuses(
    holding: TenantHolding,
    records: number,
    bytes: number,
    queuedRecords: number,
    queuedBytes: number,
  ): boolean {
    if (holding.records === 0) return false;
    if (
      queuedRecords + records <= this.maxRecords * PRESSURE &&
      queuedBytes + bytes <= this.maxBytes * PRESSURE
    )
      return false;
    const sending = Math.max(this.current.size, this.previous.size);
    if (sending < 2) return false;
    return (
      holding.records + records > this.maxRecords / sending || holding.bytes + bytes > this.maxBytes / sending
    );
  }

  /** Counts records accepted for `holding`'s tenant. */
  add(holding: TenantHolding, records: number, bytes: number): void {
    if (holding.records === 0) this.holdings.set(holding.tenant, holding);
    holding.records += records;
    holding.bytes += bytes;
  }

  /** Forgets records of `holding`'s tenant that left the queue; its last one frees the holding. */
  release(holding: TenantHolding, records: number, bytes: number): void {
    holding.records -= records;
    holding.bytes -= bytes;
    if (holding.records <= 0) this.holdings.delete(holding.tenant);
  }

  /** Tenants with records queued (for tests and bounds). */
  get tenantsHolding(): number {
    return this.holdings.size;
  }
}
