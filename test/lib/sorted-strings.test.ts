import { describe, expect, test } from "bun:test";
import { SortedStrings } from "../../src/lib/sorted-strings.ts";

const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

describe("SortedStrings", () => {
  test("keeps the order `<` gives (UTF-16 code units: U+FFFF after an astral character's surrogates)", () => {
    const strings = new SortedStrings();
    for (const value of ["b", "\uFFFF", "😀", "a", "", "ab", "A"]) expect(strings.add(value)).toBe(true);
    expect(strings.add("a")).toBe(false);
    expect(strings.first(100)).toEqual(["", "A", "a", "ab", "b", "😀", "\uFFFF"]);
    expect(strings.first(2)).toEqual(["", "A"]);
    expect(strings.size).toBe(7);
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
      const value = `s${Math.floor(random() * 5000)}`;
      if (random() < 0.6) {
        expect(strings.add(value)).toBe(!reference.has(value));
        reference.add(value);
      } else {
        expect(strings.delete(value)).toBe(reference.has(value));
        reference.delete(value);
      }
      expect(strings.size).toBe(reference.size);
    }
    expect(strings.first(Number.POSITIVE_INFINITY)).toEqual([...reference].sort(byCodeUnits));
    expect(strings.first(1000)).toEqual([...reference].sort(byCodeUnits).slice(0, 1000));
    for (const value of reference) expect(strings.delete(value)).toBe(true);
    expect(strings.size).toBe(0);
    expect(strings.first(10)).toEqual([]);
    expect(strings.delete("s1")).toBe(false);
  });
});
