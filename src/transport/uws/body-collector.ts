import type { HttpResponse as UwsResponse } from "uWebSockets.js";
import { BodyBuffer } from "../body-buffer.ts";

/**
 * A request body uWS hands over chunk by chunk (`onData`), collected into a
 * BodyBuffer, allocated at the announced Content-Length. uWS receives a body
 * whether or not it is read, for as long as the client takes to send it:
 * once the request is answered without it (a 401 on a connection kept open),
 * `drop` lets the buffer go and what still comes is ignored, so a client
 * trickling the rest of an unwanted body holds no buffer.
 */
export class BodyCollector {
  private buffer: BodyBuffer | undefined;

  constructor(
    res: Pick<UwsResponse, "onData">,
    limit: number,
    contentLength: number | undefined,
    resolve: (body: Uint8Array) => void,
    private readonly reject: (error: unknown) => void,
  ) {
    try {
      this.buffer = new BodyBuffer(limit, contentLength);
    } catch (error) {
      reject(error);
      return;
    }
    res.onData((chunk, isLast) => {
      const buffer = this.buffer;
      if (!buffer) return;
      try {
        buffer.append(new Uint8Array(chunk));
      } catch (error) {
        this.buffer = undefined;
        reject(error);
        return;
      }
      if (isLast) {
        this.buffer = undefined;
        resolve(buffer.bytes());
      }
    });
  }

  /** The request was answered without its body: the rest is not wanted, its buffer goes now. */
  drop(): void {
    if (!this.buffer) return;
    this.buffer = undefined;
    this.reject(new Error("the request was answered before its body came"));
  }

  /** Whether a buffer is still kept for the body (tests). */
  get collecting(): boolean {
    return this.buffer !== undefined;
  }
}
