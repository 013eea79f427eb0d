import { describe, expect, test } from "bun:test";
import { PairMemo } from "../../src/lib/pair-memo.ts";

describe("PairMemo", () => {
  test("makes a value once per pair, in order, and apart for each pair", () => {
    const made: string[] = [];
    const memo = new PairMemo((first: { name: string }, second: { name: string }) => {
      made.push(`${first.name}+${second.name}`);
      return { joined: `${first.name}+${second.name}` };
    });
    const a = { name: "a" };
    const b = { name: "b" };
    const ab = memo.get(a, b);
    expect(memo.get(a, b)).toBe(ab);
    expect(memo.get(b, a)).toEqual({ joined: "b+a" });
    expect(memo.get(a, a)).toEqual({ joined: "a+a" });
    expect(made).toEqual(["a+b", "b+a", "a+a"]);
  });
});
