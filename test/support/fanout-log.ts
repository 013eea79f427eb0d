import { formatEventId } from "../../src/domain/event-id.ts";
import { Fanout } from "../../src/features/realtime/fanout.ts";
import { ChannelHistory } from "../../src/features/realtime/history.ts";
import { type ReplayLimits, Resume } from "../../src/features/realtime/resume.ts";
import { KeptMessages } from "../../src/infra/kafka/kept-messages.ts";
import { createMetrics } from "../../src/metrics/metrics.ts";
import type {
  DeliveredMessage,
  FanoutBus,
  LivePosition,
  LogRead,
  LogReadResult,
} from "../../src/ports/fanout-bus.ts";

/** A world for resume tests: history, a fake fan-out log with one partition, and the fan-out feeding both. */
export const EPOCH = "e1";

export function message(offset: number, channel = "x", tenant = "acme"): DeliveredMessage {
  return {
    tenant,
    channel,
    dataJson: `{"n":${offset}}`,
    ts: Date.now(),
    position: { epoch: EPOCH, partition: 0, offset: BigInt(offset) },
  };
}

export const id = (offset: number) => formatEventId({ epoch: EPOCH, partition: 0, offset: BigInt(offset) });

/**
 * A fan-out log with one partition: `delivered` is what the live reader
 * handed over, everything in `log` from `earliest` can be read back; reads
 * wait for `release()` when `gated`.
 */
export class FakeLog implements Pick<FanoutBus, "head" | "readLog" | "logEnd"> {
  readonly log: DeliveredMessage[] = [];
  earliest = 0n;
  next = 0n;
  reads: LogRead[] = [];
  gated = false;
  private waiting: Array<() => void> = [];

  head(): LivePosition {
    return { epoch: EPOCH, partition: 0, next: this.next, logStart: this.earliest };
  }

  /** After the newest message written, delivered here or not. */
  async logEnd(): Promise<bigint> {
    const newest = this.log.at(-1)?.position.offset;
    return newest === undefined ? 0n : newest + 1n;
  }

  release(): void {
    for (const wake of this.waiting.splice(0)) wake();
  }

  async readLog(request: LogRead): Promise<LogReadResult> {
    this.reads.push(request);
    if (this.gated) await new Promise<void>((resolve) => this.waiting.push(resolve));
    if (request.epoch !== EPOCH) return { gone: true };
    if (this.earliest > request.from && !request.fromEarliest) return { gone: true };
    const from = this.earliest > request.from ? this.earliest : request.from;
    const kept = new KeptMessages(request);
    for (const entry of this.log) {
      const offset = entry.position.offset;
      if (offset < from || offset >= request.until) continue;
      if (entry.tenant !== request.tenant || entry.channel !== request.channel) continue;
      if (!kept.add(entry)) return kept.answer(offset, from, this.earliest);
    }
    return kept.answer(request.until, from, this.earliest);
  }
}

export const LIMITS: ReplayLimits = {
  maxConcurrent: 4,
  maxConcurrentPerTenant: 1,
  maxBytes: 1 << 20,
  timeoutMs: 1000,
  scanMaxOffsets: 1 << 20,
  latestCacheBytes: 1 << 20,
};

/** History as an instance with Kafka keeps it: `eventsPerChannel` for the channels watched here only. */
export function watchedHistory(eventsPerChannel: number): ChannelHistory {
  return new ChannelHistory(
    { eventsPerChannel, bytesPerChannel: 1 << 20, channels: 100, maxBytes: 1 << 24, tenantMaxBytes: 1 << 24 },
    () => {},
    "watched",
  );
}

/** History that keeps 3 events per channel, of any channel. */
export function threeEventHistory(): ChannelHistory {
  return new ChannelHistory({
    eventsPerChannel: 3,
    bytesPerChannel: 1 << 20,
    channels: 100,
    maxBytes: 1 << 24,
    tenantMaxBytes: 1 << 24,
  });
}

/** History that keeps 3 events per channel, the log, and the fan-out feeding both (as the bus would). */
export function resumeWorld(limits: ReplayLimits = LIMITS) {
  const history = threeEventHistory();
  const log = new FakeLog();
  const resume = new Resume(history, log, limits);
  const metrics = createMetrics("test", "0");
  const fanout = new Fanout(history, metrics);
  fanout.origin(EPOCH, 0, 0n);
  const publish = (offset: number, channel = "x", tenant = "acme") => {
    const delivered = message(offset, channel, tenant);
    log.log.push(delivered);
    log.next = delivered.position.offset + 1n;
    fanout.deliver(delivered);
  };
  /** Written to the log, not yet delivered here: another instance's reader is further on than this one's. */
  const ahead: DeliveredMessage[] = [];
  const writeAhead = (offset: number, channel = "x", tenant = "acme") => {
    const written = message(offset, channel, tenant);
    log.log.push(written);
    ahead.push(written);
  };
  /** This instance's reader delivers what was written ahead of it. */
  const catchUp = () => {
    for (const written of ahead.splice(0)) {
      log.next = written.position.offset + 1n;
      fanout.deliver(written);
    }
  };
  return { history, log, resume, metrics, fanout, publish, writeAhead, catchUp };
}
