/**
 * What a store says about one record id of a tenant: this request may write
 * it (`new`: the id is now claimed by it), it was written within the window
 * (`seen`), or another request is writing it now (`pending`).
 */
export type RecordIdVerdict = "new" | "seen" | "pending";

/**
 * The record ids a tenant wrote within its deduplication window, for
 * tenants that ask for per-record deduplication. A request claims its ids
 * under a name of its own (`claimant`, unique per request), then confirms
 * (written) or releases (not written) all of them at once. An id whose
 * claimant released it, or never confirmed it within the pending time (its
 * instance died), can be claimed again. Never rejects: a store that cannot
 * answer says every id is `new` (fails open: a retry during the outage may
 * write twice), counted and logged.
 */
export interface RecordIdStore {
  /** One verdict per id, in order; `ids` hold no repeats. */
  claim(
    tenant: string,
    ids: readonly string[],
    claimant: string,
    windowMs: number,
  ): Promise<RecordIdVerdict[]>;
  /** The claimant's ids are written (acknowledged): `seen` for `windowMs` from now. */
  confirm(tenant: string, claimant: string, windowMs: number): Promise<void>;
  /** The claimant's ids were not written: another request may write them. */
  release(tenant: string, claimant: string): Promise<void>;
  /**
   * Some of the claimant's ids (keys as claimed) were not written though the
   * others were (Kafka refused those records): they are free again, so a
   * resend under the same id is written. An id another request holds by now
   * is left alone. Resolves false when the store could not answer (the ids
   * may still be claimed).
   */
  forget(tenant: string, claimant: string, ids: readonly string[]): Promise<boolean>;
  close(): Promise<void>;
}
