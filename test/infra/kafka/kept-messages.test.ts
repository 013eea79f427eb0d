import { describe, expect, test } from "bun:test";
import { KeptMessages } from "../../../src/infra/kafka/kept-messages.ts";
import type { DeliveredMessage } from "../../../src/ports/fanout-bus.ts";
import { message } from "../../support/fanout-log.ts";

describe("KeptMessages: what one read of the log keeps", () => {
  test("by default the first that fit, stopping before the one that does not", () => {
    const kept = new KeptMessages({ maxMessages: 2, maxBytes: 1 << 20 });
    // Made once: each carries the millisecond it was made in.
    const [first, second, third] = [1, 2, 3].map((offset) => message(offset)) as [
      DeliveredMessage,
      DeliveredMessage,
      DeliveredMessage,
    ];
    expect([kept.add(first), kept.add(second), kept.add(third)]).toEqual([true, true, false]);
    expect(kept.answer(3n, 0n)).toEqual({
      gone: false,
      messages: [first, second],
      next: 3n,
      from: 0n,
    });
  });

  test("with keepNewest the newest within the count and the bytes, read on past thousands let go", () => {
    const count = new KeptMessages({ maxMessages: 3, maxBytes: 1 << 20, keepNewest: true });
    for (let offset = 0; offset < 5000; offset++) expect(count.add(message(offset))).toBe(true);
    const answer = count.answer(5000n, 0n);
    expect(answer).toMatchObject({ dropped: true, next: 5000n });
    expect(!answer.gone && answer.messages.map((kept) => kept.position.offset)).toEqual([
      4997n,
      4998n,
      4999n,
    ]);
    // {"n":<4 digits>} is 10 bytes: 25 keep the newest two; a single one larger than the bound is still kept.
    const bytes = new KeptMessages({ maxMessages: 100, maxBytes: 25, keepNewest: true });
    for (const offset of [1000, 2000, 3000]) bytes.add(message(offset));
    const kept = bytes.answer(3001n, 0n);
    expect(!kept.gone && kept.messages.map((one) => one.position.offset)).toEqual([2000n, 3000n]);
    const one = new KeptMessages({ maxMessages: 100, maxBytes: 5, keepNewest: true });
    const large = message(1000);
    one.add(large);
    expect(one.answer(1001n, 0n)).toMatchObject({ messages: [large] });
  });
});
