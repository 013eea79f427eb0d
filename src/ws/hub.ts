import { randomUUID } from "node:crypto";
import type { Logger } from "../log/logger.ts";
import type { Metrics } from "../metrics/metrics.ts";
import type { HttpRequest, UpgradeDecision, WsHandlers, WsPeer } from "../transport/types.ts";

export interface ConnectionState {
  id: string;
}

export interface WsHubOptions {
  runtime: string;
  metrics: Metrics;
  log: Logger;
}

/** Owns every open WebSocket of this instance; the set is freed by close events. */
export class WsHub implements WsHandlers<ConnectionState> {
  private readonly peers = new Set<WsPeer<ConnectionState>>();

  constructor(private readonly options: WsHubOptions) {}

  get size(): number {
    return this.peers.size;
  }

  async upgrade(_request: HttpRequest): Promise<UpgradeDecision<ConnectionState>> {
    return { accept: true, state: { id: randomUUID() } };
  }

  open(peer: WsPeer<ConnectionState>): void {
    this.peers.add(peer);
    this.options.metrics.wsConnections.inc({ runtime: this.options.runtime });
    this.sendFrame(peer, { type: "connected", connection: peer.state.id });
  }

  message(peer: WsPeer<ConnectionState>, text: string): void {
    let frame: unknown;
    try {
      frame = JSON.parse(text);
    } catch {
      this.sendFrame(peer, { type: "error", code: "bad_frame", message: "frames are JSON text" });
      return;
    }
    const type = (frame as { type?: unknown } | null)?.type;
    this.sendFrame(peer, {
      type: "error",
      code: "unknown_type",
      message: `unsupported frame type ${String(type)}`,
    });
  }

  drain(_peer: WsPeer<ConnectionState>): void {}

  close(peer: WsPeer<ConnectionState>, _code: number): void {
    if (this.peers.delete(peer)) this.options.metrics.wsConnections.dec({ runtime: this.options.runtime });
  }

  /**
   * Tells every client to reconnect elsewhere and closes it with 1001, in
   * batches spread over `withinMs` so clients do not all come back at once.
   */
  async disconnectAll(withinMs: number): Promise<void> {
    const peers = [...this.peers];
    const batches = Math.max(1, Math.min(20, Math.ceil(peers.length / 50)));
    const batchSize = Math.ceil(peers.length / batches);
    const pause = batches > 1 ? Math.floor(withinMs / batches) : 0;
    for (let start = 0; start < peers.length; start += batchSize) {
      for (const peer of peers.slice(start, start + batchSize)) {
        this.sendFrame(peer, {
          type: "reconnect",
          afterMs: Math.floor(Math.random() * Math.max(1, withinMs)),
        });
        peer.close(1001, "server draining");
      }
      if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }

  private sendFrame(peer: WsPeer<ConnectionState>, frame: Record<string, unknown>): void {
    const text = JSON.stringify(frame);
    if (peer.send(text) === "dropped") this.options.metrics.wsMessagesDropped.inc();
    else {
      this.options.metrics.wsMessagesSent.inc();
      this.options.metrics.wsBytesSent.inc(text.length);
    }
  }
}
