import { describe, expect, test } from "bun:test";
import { Uuid7Sequence, uuidv7 } from "../../src/lib/uuid7.ts";

const FORMAT = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const timestampOf = (id: string) => Number.parseInt(id.replaceAll("-", "").slice(0, 12), 16);

describe("uuidv7", () => {
  test("has the RFC 9562 layout: version 7, variant 10, the time in milliseconds first", () => {
    const before = Date.now();
    const id = uuidv7();
    expect(id).toMatch(FORMAT);
    expect(timestampOf(id)).toBeGreaterThanOrEqual(before);
    expect(timestampOf(id)).toBeLessThanOrEqual(Date.now());
  });

  test("a million ids are distinct, well formed and strictly increasing", () => {
    const seen = new Set<string>();
    let previous = "";
    for (let i = 0; i < 1_000_000; i++) {
      const id = uuidv7();
      if (i % 997 === 0) expect(id).toMatch(FORMAT);
      if (!(id > previous)) throw new Error(`${id} does not sort after ${previous}`);
      previous = id;
      seen.add(id);
    }
    expect(seen.size).toBe(1_000_000);
  });

  test("stay in order when the clock goes back, keeping the last timestamp", () => {
    const sequence = new Uuid7Sequence();
    const late = Date.now() + 60_000;
    const first = sequence.next(late);
    const second = sequence.next(late - 5_000);
    expect(second > first).toBe(true);
    expect(timestampOf(second)).toBe(late);
  });

  test("encodes a timestamp over 32 bits exactly", () => {
    const ms = 0xfedc_ba98_7654;
    const id = new Uuid7Sequence().next(ms);
    expect(id.slice(0, 13)).toBe("fedcba98-7654");
  });
});
