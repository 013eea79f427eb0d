import { createHash, randomBytes } from "node:crypto";
import { GatewayError } from "../../domain/errors.ts";
import type { Metrics } from "../../metrics/metrics.ts";
import type { RecordIdStore } from "../../ports/record-ids.ts";

/** Per-record deduplication by `id`, for the tenants that asked for it. */
export interface RecordDedup {
  /** The tenant's window in ms; undefined (the usual answer, a map lookup) when it does not deduplicate. */
  windowMs(tenant: string): number | undefined;
  store: RecordIdStore;
}

/** A record acknowledged without being written again: its id was written within the window. */
export interface Duplicate {
  /** Position of the record in the request. */
  index: number;
  id: string;
}

/** An accepted record whose id the client chose (a generated id is never a repeat). */
export interface DedupCandidate {
  /** Position among the request's accepted records. */
  position: number;
  /** Position in the request. */
  index: number;
  id: string;
  /** What the store keeps for it (`recordIdKey`). */
  key: string;
}

/**
 * The name a record's id is kept under: the id itself, or for a CloudEvent
 * its `source` and `id` together, since CloudEvents 1.0 makes an id unique
 * only within its source (two sources numbering their events from 1 repeat
 * each other's ids, and neither event is a duplicate). The source goes in
 * as a digest, so a long one costs the store no more than a short one.
 */
export function recordIdKey(id: string, cloudEventSource: string | undefined): string {
  if (cloudEventSource === undefined) return id;
  const source = createHash("sha256").update(cloudEventSource).digest("base64url").slice(0, 16);
  return `ce:${source}:${id}`;
}

/** What a request holds after claiming its ids: it must `settle` them once the write succeeded or failed. */
export interface ClaimedIds {
  duplicates: Duplicate[];
  /** Positions among the accepted records not to write. */
  skip: Set<number>;
  /**
   * Settles the claims after the write: `written` confirms them for the
   * window, else they are released. `unwritten` (positions among the records
   * sent, the skipped ones out) are those the sink refused while it wrote the
   * others: their ids are freed, so a resend under the same id is written.
   */
  settle(written: boolean, unwritten?: readonly number[]): Promise<void>;
}

/**
 * Claims the candidates' ids for this request. An id written within the
 * window, or twice in the request, makes its record a duplicate. When
 * another request is writing one of the ids right now, this request writes
 * nothing (its claims are released) and is answered 409 with `Retry-After`:
 * acknowledging the record then could acknowledge a write that fails.
 */
export async function claimRecordIds(
  dedup: RecordDedup,
  tenant: string,
  windowMs: number,
  candidates: readonly DedupCandidate[],
  metrics: Pick<Metrics, "recordDedup">,
): Promise<ClaimedIds> {
  // Unique per request; short, since every claimed id holds it for the window.
  const claimant = randomBytes(12).toString("base64url");
  const duplicates: Duplicate[] = [];
  const skip = new Set<number>();
  const firstOfId = new Set<string>();
  const unique: DedupCandidate[] = [];
  for (const candidate of candidates) {
    if (firstOfId.has(candidate.key)) {
      duplicates.push({ index: candidate.index, id: candidate.id });
      skip.add(candidate.position);
    } else {
      firstOfId.add(candidate.key);
      unique.push(candidate);
    }
  }
  const verdicts = await dedup.store.claim(
    tenant,
    unique.map((candidate) => candidate.key),
    claimant,
    windowMs,
  );
  let claimed = 0;
  let pending = 0;
  unique.forEach((candidate, at) => {
    const verdict = verdicts[at];
    if (verdict === "new") claimed++;
    else if (verdict === "pending") pending++;
    else {
      duplicates.push({ index: candidate.index, id: candidate.id });
      skip.add(candidate.position);
    }
  });
  if (pending > 0) {
    await dedup.store.release(tenant, claimant);
    metrics.recordDedup.inc({ outcome: "in_flight" }, pending);
    throw new GatewayError(
      "duplicate_in_flight",
      `${pending} record id(s) of this request are being written by another request`,
      { "retry-after": "1" },
    );
  }
  if (claimed > 0) metrics.recordDedup.inc({ outcome: "new" }, claimed);
  if (duplicates.length > 0) {
    metrics.recordDedup.inc({ outcome: "duplicate" }, duplicates.length);
    duplicates.sort((a, b) => a.index - b.index);
  }
  const forget = (unwritten: readonly number[]): Promise<boolean> => {
    const keys = sentKeys(unique, skip);
    const ids = unwritten.flatMap((position) => keys.get(position) ?? []);
    return ids.length === 0 ? Promise.resolve(true) : dedup.store.forget(tenant, claimant, ids);
  };
  return {
    duplicates,
    skip,
    settle: async (written, unwritten) => {
      if (!written) return dedup.store.release(tenant, claimant);
      // Freed before the answer says so: a resend right after it must not find them taken. When the
      // store could not free them, confirming would make their resend a duplicate never written (a
      // 202 followed by a lost record): the request's claims are released instead, so the resend is
      // written, and only a resend of the written ones too could be written twice (at least once).
      if (unwritten !== undefined && unwritten.length > 0 && !(await forget(unwritten)))
        return dedup.store.release(tenant, claimant);
      return dedup.store.confirm(tenant, claimant, windowMs);
    },
  };
}

/** The claimed ids by position among the records sent (the request's accepted ones, those at `skip` out). */
function sentKeys(unique: readonly DedupCandidate[], skip: ReadonlySet<number>): Map<number, string> {
  const skipped = [...skip].sort((a, b) => a - b);
  const keys = new Map<number, string>();
  let before = 0;
  for (const candidate of unique) {
    if (skip.has(candidate.position)) continue;
    while (before < skipped.length && (skipped[before] as number) < candidate.position) before++;
    keys.set(candidate.position - before, candidate.key);
  }
  return keys;
}
