import { GatewayError } from "../domain/errors.ts";
import { msUntil, sleep } from "../lib/time.ts";
import type { HttpRequest } from "../ports/transport.ts";

/** A client refused here retries this much later: bodies in flight free up as their uploads end. */
const RETRY_AFTER_SEC = "1";
/** How often the drain looks whether the bodies being received have all come. */
const CUT_POLL_MS = 50;

/**
 * Request bodies being received at once, bounded in bytes for the instance
 * (REQUEST_BODIES_MAX_BYTES). Each body is bounded by MAX_BODY_BYTES, but
 * without this one caller (one token, well within its request budget) holding
 * a thousand uploads open held a thousand bodies: 1 GiB, enough to take the
 * pod down for every tenant. A body counts from when its route asks for it
 * (after the token is checked) until it is received, for its announced
 * Content-Length, or for the route's largest body when it announced none
 * (chunked: what it may reach). A tenant holding bodies already may hold at most an equal share
 * of the bound among the tenants holding some, and never more than half, so
 * one tenant's uploads always leave room for the others'. Past either, the
 * request gets 503 `overloaded` with Retry-After, before its body is read.
 *
 * Memory: one entry per tenant with a body being received, freed with its last,
 * and one per body being received, freed when it came or failed.
 */
export class RequestBodies {
  private held = 0;
  private readonly byTenant = new Map<string, number>();
  /** How to cut each body being received (see `cutAtDrain`); each leaves once its body came or failed. */
  private readonly receiving = new Set<(error: Error) => void>();
  /** The drain cut the bodies still arriving: later ones are refused at once. */
  private cut = false;

  constructor(
    private readonly maxBytes: number,
    /** What the adapters let a body reach while it is read (MAX_BODY_BYTES). */
    private readonly maxBodyBytes: number,
  ) {}

  /** The body of `request`, counted as `tenant`'s while it is received. */
  async read(request: HttpRequest, tenant: string): Promise<Uint8Array> {
    if (this.cut) throw draining();
    const bytes = announcedBytes(request, this.maxBodyBytes);
    const own = this.byTenant.get(tenant) ?? 0;
    if (this.held + bytes > this.maxBytes)
      throw overloaded("request bodies being received fill this instance's REQUEST_BODIES_MAX_BYTES");
    if (own > 0 && own + bytes > this.maxBytes / Math.max(2, this.byTenant.size))
      throw overloaded(
        "this tenant's request bodies being received hold its share of REQUEST_BODIES_MAX_BYTES",
      );
    this.held += bytes;
    this.byTenant.set(tenant, own + bytes);
    let cut: (error: Error) => void = () => {};
    const cutting = new Promise<never>((_, reject) => {
      cut = reject;
    });
    this.receiving.add(cut);
    try {
      return await Promise.race([request.body(), cutting]);
    } finally {
      this.receiving.delete(cut);
      this.held -= bytes;
      const left = (this.byTenant.get(tenant) ?? bytes) - bytes;
      if (left > 0) this.byTenant.set(tenant, left);
      else this.byTenant.delete(tenant);
    }
  }

  /**
   * At the drain: bodies still arriving once half the time left to `deadline`
   * has passed are cut, their requests answered 503 `draining` (nothing of
   * them was accepted; the client retries elsewhere). A client trickling a
   * body a byte at a time held the drain's wait for in-flight requests to its
   * deadline, leaving the flush no time, and the gateway exited 1.
   */
  async cutAtDrain(deadline: number): Promise<void> {
    const until = Date.now() + msUntil(deadline) / 2;
    while (this.receiving.size > 0 && Date.now() < until)
      await sleep(Math.min(CUT_POLL_MS, until - Date.now()));
    this.cut = true;
    for (const cut of this.receiving) cut(draining());
  }

  /** Bytes and tenants counted now (tests). */
  get size(): { bytes: number; tenants: number } {
    return { bytes: this.held, tenants: this.byTenant.size };
  }
}

/** What a body will hold at most: its Content-Length (the adapters refuse one past the limit), else the limit. */
function announcedBytes(request: HttpRequest, maxBodyBytes: number): number {
  const header = request.header("content-length");
  const length = header === undefined ? Number.NaN : Number(header);
  return Number.isSafeInteger(length) && length >= 0 ? Math.min(length, maxBodyBytes) : maxBodyBytes;
}

function draining(): GatewayError {
  return new GatewayError("draining", "the gateway is shutting down", { "retry-after": RETRY_AFTER_SEC });
}

function overloaded(message: string): GatewayError {
  return new GatewayError("overloaded", message, { "retry-after": RETRY_AFTER_SEC });
}
