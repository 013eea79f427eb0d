import { expect, test } from "bun:test";
import { fromFanoutRecord, toFanoutRecord } from "../../../src/infra/kafka/fanout-bus.ts";
import type { FanoutMessage } from "../../../src/ports/fanout-bus.ts";

const headersOf = (record: { headers: Record<string, string> }) => new Map(Object.entries(record.headers));

test("a message survives the trip through a Kafka record, its payload byte for byte", () => {
  const message: FanoutMessage = {
    tenant: "acme",
    channel: "orders",
    dataJson: '{"n":9007199254740993, "f":1.50}',
    record: { type: "click", id: "r-1" },
    ts: 1_700_000_000_000,
  };
  const record = toFanoutRecord("fanout", message);
  expect(record.key).toBe("acme/orders");
  expect(record.value).toBe(message.dataJson);
  expect(fromFanoutRecord(headersOf(record), record.value)).toEqual(message);

  const broadcast: FanoutMessage = { tenant: "acme", broadcast: true, dataJson: "null", ts: 1 };
  const sent = toFanoutRecord("fanout", broadcast);
  expect(sent.key).toBe("acme/$broadcast");
  expect(fromFanoutRecord(headersOf(sent), sent.value)).toEqual(broadcast);
});

test("records not written by a gateway are skipped, never delivered as broken frames", () => {
  const good = toFanoutRecord("fanout", { tenant: "acme", channel: "orders", dataJson: "{}", ts: 1 });
  expect(fromFanoutRecord(headersOf(good), "{not json")).toBeUndefined();
  expect(fromFanoutRecord(new Map([["tenant", "acme"]]), "{}")).toBeUndefined();
  expect(
    fromFanoutRecord(
      new Map([
        ["tenant", "acme"],
        ["channel", 'x"}'],
      ]),
      "{}",
    ),
  ).toBeUndefined();
  expect(fromFanoutRecord(new Map([["channel", "orders"]]), "{}")).toBeUndefined();
});
