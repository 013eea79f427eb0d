import { afterEach, beforeEach, expect, jest, test } from "bun:test";
import pino from "pino";
import type { Connection } from "../../../src/features/realtime/connection.ts";
import { Sweeps } from "../../../src/features/realtime/sweeps.ts";
import { createLogger } from "../../../src/log/logger.ts";
import { createMetrics } from "../../../src/metrics/metrics.ts";

/** What the sweeps use of a connection, recorded. */
class FakeConnection {
  readonly calls: string[] = [];
  isClosing = false;
  readonly channels = new Set<string>();
  principal: { tenant: string } | undefined;
  constructor(public buffered = 0) {}
  bufferedAmount(): number {
    return this.buffered;
  }
  close(code: number, reason: string): void {
    this.isClosing = true;
    this.calls.push(`close ${code} ${reason}`);
  }
  checkExpiry(now: number): void {
    this.calls.push(`checkExpiry ${typeof now}`);
  }
  ping(): void {
    this.calls.push("ping");
  }
}

const asConnections = (fakes: FakeConnection[]) => new Set(fakes as unknown as Connection[]);
const silent = createLogger("silent", {});

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

test("each second: a connection past the backpressure limit closes 1013 and is counted; the others have their token checked", async () => {
  const metrics = createMetrics("test", "0");
  const slow = new FakeConnection(70_000);
  const atLimit = new FakeConnection(65_536);
  const idle = new FakeConnection(0);
  const sweeps = new Sweeps(
    { pingIntervalMs: 60_000, backpressureBytes: 65_536, queuedMaxBytes: 1 << 30 },
    asConnections([slow, atLimit, idle]),
    metrics,
    silent,
  );
  sweeps.start();
  jest.advanceTimersByTime(999);
  expect(slow.calls).toEqual([]);
  jest.advanceTimersByTime(1);
  expect(slow.calls).toEqual(["close 1013 slow consumer"]);
  expect(atLimit.calls).toEqual(["checkExpiry number"]);
  expect(idle.calls).toEqual(["checkExpiry number"]);
  expect((await metrics.wsSlowConsumerDisconnects.get()).values[0]?.value).toBe(1);
  sweeps.stop();
});

test("the pings of an interval go out in slices over its first half, not in one pass; a socket closed before its turn is skipped", () => {
  const connections = Array.from({ length: 10 }, () => new FakeConnection());
  const held = asConnections(connections);
  const sweeps = new Sweeps(
    { pingIntervalMs: 1000, backpressureBytes: 1 << 20, queuedMaxBytes: 1 << 30 },
    held,
    createMetrics("test", "0"),
    silent,
  );
  const pinged = () => connections.filter((connection) => connection.calls.includes("ping")).length;
  sweeps.start();
  jest.advanceTimersByTime(1000);
  // Five slices of two, 100 ms apart, the first at once.
  expect(pinged()).toBe(2);
  held.delete(connections[9] as unknown as Connection);
  jest.advanceTimersByTime(100);
  expect(pinged()).toBe(4);
  jest.advanceTimersByTime(300);
  expect(pinged()).toBe(9);
  jest.advanceTimersByTime(500);
  expect(pinged()).toBe(9);
  expect(connections.map((connection) => connection.calls.filter((call) => call === "ping").length)).toEqual([
    1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
  ]);
  sweeps.stop();
});

test("every pingIntervalMs each connection gets the app-level ping; stop ends both timers", () => {
  const connection = new FakeConnection();
  const sweeps = new Sweeps(
    { pingIntervalMs: 250, backpressureBytes: 1, queuedMaxBytes: 1 << 30 },
    asConnections([connection]),
    createMetrics("test", "0"),
    silent,
  );
  sweeps.start();
  jest.advanceTimersByTime(1000);
  expect(connection.calls.filter((call) => call === "ping")).toHaveLength(4);
  expect(connection.calls.filter((call) => call.startsWith("checkExpiry"))).toHaveLength(1);
  sweeps.stop();
  const before = connection.calls.length;
  jest.advanceTimersByTime(10_000);
  expect(connection.calls).toHaveLength(before);
});

test("the connection set is read at each sweep: one added later is swept too", () => {
  const connections = new Set<FakeConnection>();
  const sweeps = new Sweeps(
    { pingIntervalMs: 60_000, backpressureBytes: 10, queuedMaxBytes: 1 << 30 },
    connections as unknown as ReadonlySet<Connection>,
    createMetrics("test", "0"),
    silent,
  );
  sweeps.start();
  jest.advanceTimersByTime(1000);
  const late = new FakeConnection(11);
  connections.add(late);
  jest.advanceTimersByTime(1000);
  expect(late.calls).toEqual(["close 1013 slow consumer"]);
  sweeps.stop();
});

test("while frames are sent, a slow consumer is closed within 100 ms, once, before the engine's limit drops the close frame", async () => {
  const metrics = createMetrics("test", "0");
  const slow = new FakeConnection(70_000);
  const sweeps = new Sweeps(
    { pingIntervalMs: 60_000, backpressureBytes: 65_536, queuedMaxBytes: 1 << 30 },
    asConnections([slow]),
    metrics,
    silent,
  );
  sweeps.start();
  // Nothing sent: no check before the second's sweep.
  jest.advanceTimersByTime(500);
  expect(slow.calls).toEqual([]);
  sweeps.noteSending();
  jest.advanceTimersByTime(100);
  expect(slow.calls).toEqual(["close 1013 slow consumer"]);
  // Still holding its bytes while the engine closes it: neither closed nor counted again.
  sweeps.noteSending();
  jest.advanceTimersByTime(1000);
  expect(slow.calls).toEqual(["close 1013 slow consumer"]);
  expect((await metrics.wsSlowConsumerDisconnects.get()).values[0]?.value).toBe(1);
  sweeps.stop();
});

test("a slow consumer's close is logged with its tenant and channels, at most once in 10 s, counted in the metric every time", async () => {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: "warn" }, { write: (line: string) => lines.push(JSON.parse(line)) });
  const metrics = createMetrics("test", "0");
  const first = new FakeConnection(70_000);
  first.principal = { tenant: "acme" };
  for (const channel of ["orders", "a", "b", "c", "d", "e"]) first.channels.add(channel);
  const second = new FakeConnection(80_000);
  second.principal = { tenant: "globex" };
  const sweeps = new Sweeps(
    { pingIntervalMs: 60_000, backpressureBytes: 65_536, queuedMaxBytes: 1 << 30 },
    asConnections([first, second]),
    metrics,
    log,
  );
  sweeps.start();
  jest.advanceTimersByTime(1000);
  expect(first.calls).toEqual(["close 1013 slow consumer"]);
  expect(second.calls).toEqual(["close 1013 slow consumer"]);
  expect((await metrics.wsSlowConsumerDisconnects.get()).values[0]?.value).toBe(2);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatchObject({
    level: 40,
    msg: "slow WebSocket consumer closed (1013): it reads slower than its channels deliver",
    tenant: "acme",
    channels: ["orders", "a", "b", "c", "d"],
    subscriptions: 6,
    queuedBytes: 70_000,
    closed: 1,
  });
  sweeps.stop();
});

// Found in the tenant-versus-tenant audit: each socket was bounded, the sockets of a tenant together
// not, so a tenant's clients reading nothing held up to WS_BACKPRESSURE_BYTES each, as many as it may open.
test("past half of queuedMaxBytes, a tenant's largest queues are closed 1013 until it is within its share; other tenants keep theirs", async () => {
  const metrics = createMetrics("test", "0");
  const of = (tenant: string, bytes: number) => {
    const connection = new FakeConnection(bytes);
    connection.principal = { tenant };
    return connection;
  };
  const acme = [of("acme", 110), of("acme", 190), of("acme", 120), of("acme", 180)];
  const globex = [of("globex", 190), of("globex", 190)];
  const sweeps = new Sweeps(
    { pingIntervalMs: 60_000, backpressureBytes: 200, queuedMaxBytes: 1000 },
    asConnections([...acme, ...globex]),
    metrics,
    silent,
  );
  sweeps.start();
  sweeps.noteSending();
  jest.advanceTimersByTime(100);
  // 600 bytes for acme, over 500: its largest queue goes, and 410 are left.
  expect(acme.map((connection) => connection.calls)).toEqual([[], ["close 1013 slow consumer"], [], []]);
  expect(globex.map((connection) => connection.calls)).toEqual([[], []]);
  expect((await metrics.wsSlowConsumerDisconnects.get()).values[0]?.value).toBe(1);
  sweeps.stop();
});

test("past queuedMaxBytes in all, the tenant holding the most loses its largest queues until the total is within it", () => {
  const of = (tenant: string, bytes: number) => {
    const connection = new FakeConnection(bytes);
    connection.principal = { tenant };
    return connection;
  };
  const acme = [of("acme", 200), of("acme", 250)];
  const globex = [of("globex", 190), of("globex", 190), of("globex", 20)];
  const initech = [of("initech", 150), of("initech", 150)];
  const sweeps = new Sweeps(
    { pingIntervalMs: 60_000, backpressureBytes: 300, queuedMaxBytes: 1000 },
    asConnections([...acme, ...globex, ...initech]),
    createMetrics("test", "0"),
    silent,
  );
  sweeps.start();
  sweeps.noteSending();
  jest.advanceTimersByTime(100);
  // 1150 in all, no tenant over 500: acme (450) pays, its 250 is enough.
  expect(acme.map((connection) => connection.calls)).toEqual([[], ["close 1013 slow consumer"]]);
  expect([...globex, ...initech].every((connection) => connection.calls.length === 0)).toBe(true);
  // Within the budget now: the next check closes nothing more.
  sweeps.noteSending();
  jest.advanceTimersByTime(100);
  expect(acme[0]?.calls).toEqual([]);
  sweeps.stop();
});
