import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { compareCodePoints, SortedStrings } from "../../src/lib/sorted-strings.ts";

/** Redis's order for members of equal score: their UTF-8 bytes. */
const byUtf8Bytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

describe("compareCodePoints", () => {
  test("orders well-formed strings as their UTF-8 bytes do (as Redis does), not as `<` does", () => {
    // `<` puts an astral character (U+D83D U+DE00) before U+E000–FFFF; UTF-8 and code points put it after.
    expect("😀" < "\uE000").toBe(true);
    expect(compareCodePoints("😀", "\uE000")).toBeGreaterThan(0);
    expect(compareCodePoints("\uFFFF", "😀")).toBeLessThan(0);
    expect(compareCodePoints("a", "ab")).toBeLessThan(0);
    expect(compareCodePoints("ab", "ab")).toBe(0);
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), fc.string({ unit: "grapheme" }), (a, b) => {
        expect(Math.sign(compareCodePoints(a, b))).toBe(Math.sign(byUtf8Bytes(a, b)));
      }),
      { numRuns: 2000 },
    );
  });
});

describe("SortedStrings", () => {
  test("keeps code point order (U+FFFF before an astral character), as Redis keeps the same subjects", () => {
    const strings = new SortedStrings();
    for (const value of ["b", "\uFFFF", "😀", "a", "", "ab", "A", "\uE000"])
      expect(strings.add(value)).toBe(true);
    expect(strings.add("a")).toBe(false);
    expect(strings.add("😀")).toBe(false);
    expect(strings.first(100)).toEqual(["", "A", "a", "ab", "b", "\uE000", "\uFFFF", "😀"]);
    expect(strings.first(2)).toEqual(["", "A"]);
    expect(strings.size).toBe(8);
    expect(strings.delete("\uE000")).toBe(true);
    expect(strings.first(100)).toEqual(["", "A", "a", "ab", "b", "\uFFFF", "😀"]);
  });

  test("stays sorted through many adds and removes across chunk splits and emptied chunks", () => {
    const strings = new SortedStrings();
    const reference = new Set<string>();
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let step = 0; step < 20_000; step++) {
      // Letters of every UTF-8 length, and astral ones beside U+E000–FFFF.
      const value = `s${String.fromCodePoint([0x61, 0xe9, 0xe000, 0xffee, 0x1f600][step % 5] as number)}${Math.floor(random() * 1000)}`;
      if (random() < 0.6) {
        expect(strings.add(value)).toBe(!reference.has(value));
        reference.add(value);
      } else {
        expect(strings.delete(value)).toBe(reference.has(value));
        reference.delete(value);
      }
      expect(strings.size).toBe(reference.size);
    }
    expect(strings.first(Number.POSITIVE_INFINITY)).toEqual([...reference].sort(byUtf8Bytes));
    expect(strings.first(1000)).toEqual([...reference].sort(byUtf8Bytes).slice(0, 1000));
    for (const value of reference) expect(strings.delete(value)).toBe(true);
    expect(strings.size).toBe(0);
    expect(strings.first(10)).toEqual([]);
    expect(strings.delete("s1")).toBe(false);
  });
});
