import { expect, test } from "bun:test";
import { HealthState } from "../../../src/features/operations/health.ts";
import { createRealtimeModule, FANOUT_STARTING_REASON } from "../../../src/features/realtime/module.ts";
import { LocalFanoutBus } from "../../../src/infra/local/fanout-bus.ts";
import { createLogger } from "../../../src/log/logger.ts";
import { createMetrics } from "../../../src/metrics/metrics.ts";
import type { FanoutListener } from "../../../src/ports/fanout-bus.ts";

/** A bus whose starts wait for the test: `finish()` lets the next one go on, `fail()` rejects it. */
function busStartingOnCue() {
  const bus = new LocalFanoutBus();
  const starts: Array<{ finish: () => void; fail: () => void }> = [];
  const startLocally = bus.start.bind(bus);
  bus.start = (listener: FanoutListener) =>
    new Promise<void>((resolve, reject) => {
      starts.push({
        finish: () => startLocally(listener).then(resolve, reject),
        fail: () => reject(new Error("broker unreachable")),
      });
    });
  return { bus, starts };
}

function realtimeModule(bus: LocalFanoutBus, health: HealthState) {
  return createRealtimeModule(
    {
      ws: {
        runtime: "test",
        pingIntervalMs: 60_000,
        authTimeoutMs: 60_000,
        backpressureBytes: 1 << 20,
        queuedMaxBytes: 1 << 28,
        maxConnections: 10,
        maxUnauthenticated: 10,
        maxConnectionsPerTenant: 10,
        maxSubscriptions: 10,
        maxChannels: 1000,
        maxTenantChannels: 1000,
        maxMessagesPerSec: 100,
        trustProxyHops: 0,
        tokenExpiryWarningMs: 60_000,
      },
      sse: { heartbeatMs: 15_000 },
      history: {
        eventsPerChannel: 10,
        bytesPerChannel: 10_000,
        channels: 10,
        maxBytes: 1 << 20,
        tenantMaxBytes: 1 << 20,
        keepIdleMs: 60_000,
      },
      replay: {
        maxConcurrent: 1,
        maxConcurrentPerTenant: 1,
        maxBytes: 1 << 20,
        timeoutMs: 1000,
        scanMaxOffsets: 1 << 20,
        latestCacheBytes: 1 << 20,
      },
    },
    {
      authenticator: { verify: async () => Promise.reject(new Error("no tokens here")) },
      authenticate: () => Promise.reject(new Error("no tokens here")),
      bus,
      metrics: createMetrics("test", "0"),
      log: createLogger("silent", {}),
      admitConnection: async () => {},
      admitRead: () => undefined,
      presenceStore: undefined,
      publish: async () => undefined,
      health,
    },
  );
}

test("the instance is not ready until the fan-out bus has started: a socket would get no position, and could miss events", async () => {
  const { bus, starts } = busStartingOnCue();
  const health = new HealthState();
  const realtime = realtimeModule(bus, health);
  expect(health.list()).toEqual([FANOUT_STARTING_REASON]);
  starts[0]?.finish();
  await realtime.fanoutStartSettled;
  expect(health.ready).toBe(true);
  await realtime.close?.(Date.now() + 1000);
});

test("a first start that fails makes the instance ready all the same (ingest is not held hostage); the bus retries", async () => {
  const { bus, starts } = busStartingOnCue();
  const health = new HealthState();
  const realtime = realtimeModule(bus, health);
  starts[0]?.fail();
  await realtime.fanoutStartSettled;
  expect(health.ready).toBe(true);
  await realtime.close?.(Date.now() + 1000);
});
