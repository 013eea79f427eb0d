/** A final answer kept for repeats of its request (strings only: the routes that use it answer JSON). */
export interface StoredReply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * What a store says about an idempotency key: this request may run it
 * (`claimed`: it must then `complete` or `release`), or another request with
 * the key runs (`pending`) or ran (`done`); each says with which body
 * fingerprint, so a key reused for another body is told apart.
 */
export type IdempotencyClaim =
  | { state: "claimed" }
  | { state: "pending"; fingerprint: string }
  | { state: "done"; fingerprint: string; reply: StoredReply };

/**
 * Where answers to requests with an `Idempotency-Key` are kept for the
 * window. Never rejects: a store that cannot answer lets the request run
 * (fails open), counted and logged.
 */
export interface IdempotencyStore {
  claim(id: string, fingerprint: string): Promise<IdempotencyClaim>;
  complete(id: string, fingerprint: string, reply: StoredReply): Promise<void>;
  /** Forgets a claim whose request got no final answer (a 5xx, a 429), so a retry runs again. */
  release(id: string): Promise<void>;
  close(): Promise<void>;
}
