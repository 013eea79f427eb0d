/** What the sweep needs of a socket: the time something was last heard from it, and two ways to reach it. */
export interface LiveSocket {
  readonly data: { heardAt: number };
  ping(): unknown;
  terminate(): void;
}

/**
 * Bun restarts a WebSocket's idle timer on every send (uWebSockets' `resetIdleTimeoutOnSend`, which
 * Bun does not expose), so a peer that answers nothing while the gateway sends it events and
 * application pings never timed out: a vanished client held its slot until TCP gave up, ~15 minutes.
 * uWebSockets.js counts only what it receives. Here, as there: silent for half the idle timeout, a
 * socket gets a protocol ping; silent for all of it, its connection is cut (close code 1006).
 * The sockets register on open and leave on close; the sweep's timer stops with the server.
 */
export class SilentPeers<Socket extends LiveSocket> {
  private readonly sockets = new Set<Socket>();
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(
    private readonly idleMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    // A quarter of the timeout: a silent peer is cut between 1 and 1.25 timeouts after it was last heard.
    this.timer = setInterval(() => this.sweep(), idleMs / 4);
    this.timer.unref();
  }

  opened(socket: Socket): void {
    socket.data.heardAt = this.now();
    this.sockets.add(socket);
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

  stop(): void {
    clearInterval(this.timer);
  }
}
