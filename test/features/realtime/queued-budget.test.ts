import { expect, test } from "bun:test";
import fc from "fast-check";
import { overBudget, type QueuedBytes } from "../../../src/features/realtime/queued-budget.ts";

const queue = (tenant: string, bytes: number, client = `${tenant}${bytes}`): QueuedBytes<string> => ({
  client,
  bytes,
  tenant,
});

test("within the total and every tenant within half of it, nothing is dropped", () => {
  expect(overBudget([queue("a", 200), queue("b", 250), queue("c", 50)], 500)).toEqual([]);
});

test("a tenant over its half loses its largest queues until within it; another tenant keeps its own", () => {
  const dropped = overBudget(
    [queue("a", 110), queue("a", 190), queue("a", 120), queue("a", 180), queue("b", 300)],
    1000,
  );
  expect(dropped.map(({ client }) => client)).toEqual(["a190"]);
});

// Found in review: one pass over the queues, largest first, skipped the largest queue of a tenant that
// became the largest only after another's was dropped, and closed a smaller one in its place.
test("over the total, the tenant holding the most pays its largest queue each time, whoever that is by then", () => {
  const dropped = overBudget(
    [
      queue("a", 90, "a1"),
      queue("a", 90, "a2"),
      queue("a", 70),
      queue("b", 200),
      queue("b", 40),
      queue("c", 120),
      queue("c", 110),
    ],
    500,
  );
  expect(dropped.map(({ client }) => client)).toEqual(["a1", "b200"]);
});

test("what is left is within both bounds, and each tenant lost its largest queues, none smaller kept in their place", () => {
  const queues = fc.array(
    fc.record({ tenant: fc.constantFrom("a", "b", "c", "d"), bytes: fc.integer({ min: 1, max: 100 }) }),
    { maxLength: 60 },
  );
  fc.assert(
    fc.property(queues, fc.integer({ min: 2, max: 2000 }), (given, maxBytes) => {
      const all = given.map(({ tenant, bytes }, index) => ({ client: String(index), tenant, bytes }));
      const dropped = new Set(overBudget(all, maxBytes).map(({ client }) => client));
      const kept = all.filter(({ client }) => !dropped.has(client));
      const sum = (list: typeof all) => list.reduce((total, { bytes }) => total + bytes, 0);
      expect(sum(kept)).toBeLessThanOrEqual(maxBytes);
      for (const tenant of ["a", "b", "c", "d"]) {
        const own = kept.filter((entry) => entry.tenant === tenant);
        expect(sum(own)).toBeLessThanOrEqual(maxBytes / 2);
        const largestKept = Math.max(0, ...own.map(({ bytes }) => bytes));
        for (const { client, bytes } of all.filter(
          (entry) => entry.tenant === tenant && dropped.has(entry.client),
        ))
          expect([client, bytes >= largestKept]).toEqual([client, true]);
      }
    }),
    { numRuns: 500 },
  );
});

test("100,000 queues of 10,000 tenants half again over the total are brought within it in one call", () => {
  const queues = Array.from({ length: 100_000 }, (_, index) =>
    queue(`t${index % 10_000}`, 1 + (index % 97), String(index)),
  );
  const total = queues.reduce((sum, { bytes }) => sum + bytes, 0);
  const maxBytes = Math.floor(total / 1.5);
  const dropped = overBudget(queues, maxBytes);
  const droppedBytes = dropped.reduce((sum, { bytes }) => sum + bytes, 0);
  expect(total - droppedBytes).toBeLessThanOrEqual(maxBytes);
  // Largest first: far fewer queues than bytes over the bound would take at one byte each.
  expect(dropped.length).toBeLessThan(30_000);
});
