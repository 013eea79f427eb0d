/**
 * The RateLimit-Policy and RateLimit structured fields of
 * draft-ietf-httpapi-ratelimit-headers (-10), derived from the legacy
 * RateLimit-Limit / -Remaining / -Reset the limiter answers with, which stay:
 *
 *   RateLimit-Policy: "tenant";q=1000;w=1
 *   RateLimit: "tenant";r=998;t=1
 *
 * Each is a Structured Fields List of one Item: the policy name as an sf-string
 * with the parameters q (quota) and w (window, seconds), or r (remaining) and t
 * (seconds until quota comes back). No `qu`: the tenant budget counts events,
 * which the draft's registry has no unit for (its default, "requests", is
 * right for the per-IP policy).
 */

import { LruCache } from "../lib/lru.ts";
import type { RateLimitFields } from "../ports/admission.ts";
import type { HeaderBlock } from "../ports/transport.ts";
import { headerBlock } from "./header-block.ts";

/** The names of the gateway's windowed policies: a tenant's events, a client IP's requests and WebSocket connects. */
export type RateLimitPolicy = "tenant" | "ip" | "ip-connects";

/** Budgets whose shared block one policy keeps: the default and the quota table's, which are few. */
const MAX_BUDGETS = 1_000;

/**
 * The legacy headers and the two fields of one policy's admitted requests.
 * What stays while a budget does (RateLimit-Limit, -Reset and -Policy) is
 * one header block per budget, made once and shared by its replies (an
 * adapter keeps what it builds from a block: Bun's Headers, uWS's text);
 * each request adds only RateLimit-Remaining and RateLimit.
 */
export class AdmittedFields {
  /** By limit, for a reset of one window (the usual answer: windows are one second). */
  private readonly blocks = new LruCache<number, HeaderBlock>(MAX_BUDGETS);

  constructor(
    private readonly policy: RateLimitPolicy,
    private readonly windowSec: number,
  ) {}

  /** `resetSec` ≥ 1. */
  headers(limit: number, remaining: number, resetSec: number): RateLimitFields {
    const remainingText = String(remaining);
    return {
      own: {
        "ratelimit-remaining": remainingText,
        ratelimit: `"${this.policy}";r=${remainingText};t=${resetSec}`,
      },
      shared: resetSec === this.windowSec ? this.block(limit) : this.newBlock(limit, resetSec),
    };
  }

  private block(limit: number): HeaderBlock {
    let block = this.blocks.get(limit);
    if (block === undefined) {
      block = this.newBlock(limit, this.windowSec);
      this.blocks.set(limit, block);
    }
    return block;
  }

  private newBlock(limit: number, resetSec: number): HeaderBlock {
    return headerBlock({
      "ratelimit-limit": String(limit),
      "ratelimit-reset": String(resetSec),
      "ratelimit-policy": `"${this.policy}";q=${limit};w=${this.windowSec}`,
    });
  }
}

/**
 * Adds the two fields to `headers` (in place: the limiter's headers object is
 * fresh per request) when it holds the legacy ones; `windowSec` is the
 * policy's window. Returns `headers`.
 */
export function addRateLimitFields(
  headers: Record<string, string>,
  policy: RateLimitPolicy,
  windowSec: number,
): Record<string, string> {
  const limit = headers["ratelimit-limit"];
  if (limit === undefined) return headers;
  headers["ratelimit-policy"] = `"${policy}";q=${limit};w=${windowSec}`;
  headers.ratelimit = `"${policy}";r=${headers["ratelimit-remaining"] ?? "0"};t=${headers["ratelimit-reset"] ?? "0"}`;
  return headers;
}

/**
 * The headers of a 429 from a cap on open connections (a tenant's WebSockets
 * and event streams): Retry-After, and the legacy headers and the two fields
 * as every 429 of a limited route carries them, for the policy
 * `tenant-connections`. It has no window (`w`): a slot comes back when one of
 * the tenant's connections closes, so the reset is the Retry-After hint.
 */
export function connectionCapFields(cap: number, retryAfterSec: number): Record<string, string> {
  return {
    "retry-after": String(retryAfterSec),
    "ratelimit-limit": String(cap),
    "ratelimit-remaining": "0",
    "ratelimit-reset": String(retryAfterSec),
    "ratelimit-policy": `"tenant-connections";q=${cap}`,
    ratelimit: `"tenant-connections";r=0;t=${retryAfterSec}`,
  };
}
