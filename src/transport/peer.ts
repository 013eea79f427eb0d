import type { SendResult, WsPeer } from "../ports/transport.ts";

/** One engine's WebSocket, reduced to what a peer needs; `send` already mapped to a SendResult. */
export interface EngineSocket {
  send(text: string): SendResult;
  subscribe(topic: string): void;
  unsubscribe(topic: string): void;
  bufferedAmount(): number;
  close(code: number, reason: string): void;
}

/**
 * The core's view of an open WebSocket, the same on every engine. Once closed
 * (by us, or by the engine's close event through `markClosed`) it never
 * touches the engine's socket again: engines invalidate it on close.
 */
export class EnginePeer<State> implements WsPeer<State> {
  private closed = false;

  constructor(
    readonly state: State,
    private readonly socket: EngineSocket,
  ) {}

  send(text: string): SendResult {
    return this.closed ? "dropped" : this.socket.send(text);
  }

  subscribe(topic: string): void {
    if (!this.closed) this.socket.subscribe(topic);
  }

  unsubscribe(topic: string): void {
    if (!this.closed) this.socket.unsubscribe(topic);
  }

  bufferedAmount(): number {
    return this.closed ? 0 : this.socket.bufferedAmount();
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close(code, reason);
  }

  /** The engine reported the socket closed. */
  markClosed(): void {
    this.closed = true;
  }
}
