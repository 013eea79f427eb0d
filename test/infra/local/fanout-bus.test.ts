import { expect, test } from "bun:test";
import { LocalFanoutBus } from "../../../src/infra/local/fanout-bus.ts";
import type { DeliveredMessage, FanoutMessage, FanoutRelay } from "../../../src/ports/fanout-bus.ts";

const message = (n: number): FanoutMessage => ({
  tenant: "acme",
  channel: "orders",
  dataJson: `{"n":${n}}`,
  ts: 0,
});

function listening(bus: LocalFanoutBus): DeliveredMessage[] {
  const delivered: DeliveredMessage[] = [];
  bus.start({ deliver: (entry) => delivered.push(entry), origin: () => {} });
  return delivered;
}

test("in a worker, a publish goes through the relay, and what the relay brings (any worker's) is delivered in its order", async () => {
  let fromRelay: (messages: FanoutMessage[]) => void = () => {};
  const sent: FanoutMessage[][] = [];
  const relay: FanoutRelay = {
    send: (messages) => {
      sent.push(messages);
      // The supervisor's copy, after another worker's message that reached it first.
      fromRelay([message(99)]);
      fromRelay(messages);
      return Promise.resolve();
    },
    onMessages: (listener) => {
      fromRelay = listener;
    },
  };
  const bus = new LocalFanoutBus(relay);
  const delivered = listening(bus);
  await bus.publish([message(1)]);
  expect(sent).toEqual([[message(1)]]);
  expect(delivered.map((entry) => [entry.dataJson, entry.position.offset])).toEqual([
    ['{"n":99}', 0n],
    ['{"n":1}', 1n],
  ]);
  expect(bus.head("acme/orders")?.next).toBe(2n);
});

test("without a supervisor (gone, or none) a publish is delivered here", async () => {
  const relay: FanoutRelay = { send: () => undefined, onMessages: () => {} };
  for (const bus of [new LocalFanoutBus(relay), new LocalFanoutBus()]) {
    const delivered = listening(bus);
    await bus.publish([message(1), message(2)]);
    await Promise.resolve();
    expect(delivered.map((entry) => entry.position.offset)).toEqual([0n, 1n]);
  }
});
