import { GatewayError } from "../domain/errors.ts";

/**
 * Accumulates a request body up to a byte limit. When the client announced a
 * Content-Length the buffer is allocated once at that size, so each chunk is
 * copied exactly once; otherwise it grows geometrically. Its memory comes
 * from `Buffer.allocUnsafe`, which on Node carves small bodies out of a shared
 * pool instead of allocating an ArrayBuffer per request (those made GC a fifth
 * of a one-event request's cost); only the bytes written are ever exposed.
 */
export class BodyBuffer {
  private buffer: Uint8Array;
  private length = 0;

  constructor(
    private readonly limit: number,
    contentLength: number | undefined,
  ) {
    if (contentLength !== undefined && contentLength > limit) throw tooLarge(limit);
    this.buffer = Buffer.allocUnsafe(contentLength ?? Math.min(limit, 16 * 1024));
  }

  /** Copies `chunk` in; throws `payload_too_large` once the limit is passed. */
  append(chunk: Uint8Array): void {
    const needed = this.length + chunk.byteLength;
    if (needed > this.limit) throw tooLarge(this.limit);
    if (needed > this.buffer.byteLength) {
      const grown = Buffer.allocUnsafe(Math.min(this.limit, Math.max(needed, this.buffer.byteLength * 2)));
      grown.set(this.buffer.subarray(0, this.length));
      this.buffer = grown;
    }
    this.buffer.set(chunk, this.length);
    this.length = needed;
  }

  bytes(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }
}

export function tooLarge(limit: number): GatewayError {
  return new GatewayError("payload_too_large", `request body exceeds ${limit} bytes`);
}

/** The body reader's error when the client goes away mid-upload: a 499, never a server fault. */
export function clientClosed(): GatewayError {
  return new GatewayError(
    "client_closed_request",
    "the client closed the connection before the body was read",
  );
}

/** Parses a Content-Length header; undefined when absent or not a plain integer. */
export function parseContentLength(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d+$/.test(value)) return undefined;
  return Number(value);
}
