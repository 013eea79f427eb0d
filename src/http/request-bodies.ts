import { GatewayError } from "../domain/errors.ts";
import type { HttpRequest } from "../ports/transport.ts";

/** A client refused here retries this much later: bodies in flight free up as their uploads end. */
const RETRY_AFTER_SEC = "1";

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
 * Memory: one entry per tenant with a body being received, freed with its last.
 */
export class RequestBodies {
  private held = 0;
  private readonly byTenant = new Map<string, number>();

  constructor(
    private readonly maxBytes: number,
    /** What the adapters let a body reach while it is read (MAX_BODY_BYTES). */
    private readonly maxBodyBytes: number,
  ) {}

  /** The body of `request`, counted as `tenant`'s while it is received. */
  async read(request: HttpRequest, tenant: string): Promise<Uint8Array> {
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
    try {
      return await request.body();
    } finally {
      this.held -= bytes;
      const left = (this.byTenant.get(tenant) ?? bytes) - bytes;
      if (left > 0) this.byTenant.set(tenant, left);
      else this.byTenant.delete(tenant);
    }
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

function overloaded(message: string): GatewayError {
  return new GatewayError("overloaded", message, { "retry-after": RETRY_AFTER_SEC });
}
