import { describe, expect, test } from "bun:test";
import { OwnedEntries } from "../../src/lib/owned-entries.ts";

describe("OwnedEntries", () => {
  test("past the count bound the owner holding the most loses its oldest; another owner's entries stay", () => {
    const evicted: string[] = [];
    const entries = new OwnedEntries<string>(
      { maxEntries: 4, maxWeight: Number.POSITIVE_INFINITY },
      (value) => evicted.push(value),
    );
    entries.set("quiet", "q1", "q1");
    for (let n = 1; n <= 6; n++) entries.set("noisy", `n${n}`, `n${n}`);
    expect(entries.get("quiet", "q1")).toBe("q1");
    expect(evicted).toEqual(["n1", "n2", "n3"]);
    expect(entries.size).toEqual({ entries: 4, weight: 0, owners: 2 });
    // A write of the smaller owner past the bound still costs the larger one.
    entries.set("quiet", "q2", "q2");
    expect(evicted.at(-1)).toBe("n4");
    expect([entries.get("quiet", "q1"), entries.get("quiet", "q2")]).toEqual(["q1", "q2"]);
  });

  test("past the weight bound the owner holding the most weight pays; a set moves an entry to the young end", () => {
    const entries = new OwnedEntries<string>({ maxEntries: 100, maxWeight: 100 });
    entries.set("a", "a1", "a1", 10);
    entries.set("b", "b1", "b1", 40);
    entries.set("b", "b2", "b2", 40);
    entries.set("b", "b1", "b1", 40);
    entries.set("a", "a2", "a2", 20);
    expect(entries.get("b", "b2")).toBeUndefined();
    expect([entries.get("a", "a1"), entries.get("a", "a2"), entries.get("b", "b1")]).toEqual([
      "a1",
      "a2",
      "b1",
    ]);
    expect(entries.size).toEqual({ entries: 3, weight: 70, owners: 2 });
  });

  test("quiet writers under one owner's flood: the flooding owner pays, whoever arrived first", () => {
    const evicted: string[] = [];
    const entries = new OwnedEntries<string>(
      { maxEntries: 8, maxWeight: Number.POSITIVE_INFINITY },
      (value) => evicted.push(value),
    );
    entries.set("early", "e1", "e1");
    for (let n = 1; n <= 6; n++) entries.set("noisy", `n${n}`, `n${n}`);
    for (const owner of ["late", "later", "latest"]) entries.set(owner, "k", owner);
    entries.set("late", "k2", "late2");
    expect(evicted).toEqual(["n1", "n2", "n3"]);
    expect(
      ["early", "late", "later", "latest"].map((owner) => entries.get(owner, owner === "early" ? "e1" : "k")),
    ).toEqual(["e1", "late", "later", "latest"]);
  });

  test("owners holding one entry each lose them oldest first, never the writer's new one", () => {
    const entries = new OwnedEntries<string>({ maxEntries: 3, maxWeight: Number.POSITIVE_INFINITY });
    for (const owner of ["a", "b", "c", "d", "e"]) entries.set(owner, "k", owner);
    expect(["a", "b", "c", "d", "e"].map((owner) => entries.get(owner, "k"))).toEqual([
      undefined,
      undefined,
      "c",
      "d",
      "e",
    ]);
  });

  test("an owner is freed with its last entry; delete and clear free their weight", () => {
    const entries = new OwnedEntries<number>({ maxEntries: 10, maxWeight: 100 });
    entries.set("a", "x", 1, 30);
    entries.set("b", "y", 2, 30);
    entries.delete("a", "x");
    entries.delete("a", "missing");
    expect(entries.size).toEqual({ entries: 1, weight: 30, owners: 1 });
    entries.clear();
    expect(entries.size).toEqual({ entries: 0, weight: 0, owners: 0 });
  });
});
