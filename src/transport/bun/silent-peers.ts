/** What the sweep needs of a socket: the time something was last heard from it, and two ways to reach it. */
export interface LiveSocket {
  readonly data: { heardAt: number };
  ping(): unknown;
  terminate(): void;
}

/**
 * Bun restarts a WebSocket's idle timer on every send (uWebSockets' `resetIdleTimeoutOnSend`, which
 * Bun sets and does not expose), so a peer that answers nothing while the gateway sends it events
 * and application pings never timed out: a vanished client held its slot until TCP gave up, ~15
 * minutes. uWebSockets.js on Node counts only what it receives. Here: a socket silent (no message,
 * ping or pong) for half the idle timeout gets a protocol ping at each sweep; silent for all of it,
 * its connection is cut (close code 1006) at the next sweep. Sockets register on open and leave on
 * close; the sweep's timer starts with the first socket and stops with the server.
 */
export class SilentPeers<Socket extends LiveSocket> {
  private readonly sockets = new Set<Socket>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private stopped = false;

  constructor(
    /** 0 turns the sweep off, as it turns off the engine's idle timeout. */
    private readonly idleMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  opened(socket: Socket): void {
    if (this.idleMs <= 0 || this.stopped) return;
    socket.data.heardAt = this.now();
    this.sockets.add(socket);
    if (this.timer) return;
    // A quarter of the timeout: a silent peer is cut between 1 and 1.25 timeouts after it was last heard.
    this.timer = setInterval(() => this.sweep(), this.idleMs / 4);
    this.timer.unref();
  }

  heard(socket: Socket): void {
    socket.data.heardAt = this.now();
  }

  closed(socket: Socket): void {
    this.sockets.delete(socket);
  }

  sweep(): void {
    const now = this.now();
    for (const socket of this.sockets) {
      const silentMs = now - socket.data.heardAt;
      if (silentMs >= this.idleMs) {
        this.sockets.delete(socket);
        socket.terminate();
      } else if (silentMs >= this.idleMs / 2) socket.ping();
    }
  }

  /** The server stopped listening: the drain closes the sockets left, no longer watched. */
  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.sockets.clear();
  }

  get size(): number {
    return this.sockets.size;
  }
}
