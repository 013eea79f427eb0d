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
  /** Each tenant's bodies being received, in an object kept while it has some: one Map look-up per body. */
  private readonly byTenant = new Map<string, TenantBodies>();
  /**
   * The bodies being received, linked through themselves (a Set's add and delete cost Bun more than
   * the rest of a read); each leaves once it came, failed or was cut (see `cutAtDrain`).
   */
  private first: Receiving | undefined;
  /** The drain cut the bodies still arriving: later ones are refused at once. */
  private cut = false;

  constructor(
    private readonly maxBytes: number,
    /** What the adapters let a body reach while it is read (MAX_BODY_BYTES). */
    private readonly maxBodyBytes: number,
  ) {}

  /**
   * The body of `request`, counted as `tenant`'s while it is received. One promise and one reaction
   * on the adapter's body per request (it runs on every ingest): the drain's cut rejects that promise
   * itself rather than racing one made for it.
   */
  read(request: HttpRequest, tenant: string): Promise<Uint8Array> {
    if (this.cut) return Promise.reject(draining());
    const bytes = announcedBytes(request, this.maxBodyBytes);
    const own = this.byTenant.get(tenant);
    if (this.held + bytes > this.maxBytes)
      return Promise.reject(
        overloaded("request bodies being received fill this instance's REQUEST_BODIES_MAX_BYTES"),
      );
    if (
      own !== undefined &&
      own.bytes > 0 &&
      own.bytes + bytes > this.maxBytes / Math.max(2, this.byTenant.size)
    )
      return Promise.reject(
        overloaded("this tenant's request bodies being received hold its share of REQUEST_BODIES_MAX_BYTES"),
      );
    const counted = own ?? { bytes: 0, bodies: 0 };
    if (own === undefined) this.byTenant.set(tenant, counted);
    counted.bytes += bytes;
    counted.bodies++;
    this.held += bytes;
    return new Promise<Uint8Array>((resolve, reject) => {
      const receiving: Receiving = { tenant, counted, bytes, reject, previous: undefined, next: this.first };
      if (this.first !== undefined) this.first.previous = receiving;
      this.first = receiving;
      let body: Promise<Uint8Array>;
      try {
        body = request.body();
      } catch (error) {
        // An adapter that throws rather than rejects: the count is freed all the same.
        this.release(receiving);
        reject(error);
        return;
      }
      body.then(
        (body) => {
          this.release(receiving);
          resolve(body);
        },
        (error: unknown) => {
          this.release(receiving);
          reject(error);
        },
      );
    });
  }

  /** Unlinks and uncounts `receiving`, once: its body came, failed, or was cut. */
  private release(receiving: Receiving): boolean {
    if (receiving.released) return false;
    receiving.released = true;
    if (receiving.previous === undefined) this.first = receiving.next;
    else receiving.previous.next = receiving.next;
    if (receiving.next !== undefined) receiving.next.previous = receiving.previous;
    this.held -= receiving.bytes;
    receiving.counted.bytes -= receiving.bytes;
    if (--receiving.counted.bodies === 0) this.byTenant.delete(receiving.tenant);
    return true;
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
    while (this.first !== undefined && Date.now() < until)
      await sleep(Math.min(CUT_POLL_MS, until - Date.now()));
    this.cut = true;
    while (this.first !== undefined) {
      const receiving = this.first;
      this.release(receiving);
      receiving.reject(draining());
    }
  }

  /** Bytes and tenants counted now (the bytes are a gauge, read when scraped). */
  get size(): { bytes: number; tenants: number } {
    return { bytes: this.held, tenants: this.byTenant.size };
  }
}

/** A tenant's bodies being received: their bytes, and how many (the entry goes with the last). */
interface TenantBodies {
  bytes: number;
  bodies: number;
}

/** A body being received: what it counts, and how the drain cuts it. */
interface Receiving {
  tenant: string;
  counted: TenantBodies;
  bytes: number;
  reject(error: Error): void;
  previous: Receiving | undefined;
  next: Receiving | undefined;
  released?: true;
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
