import { expect, test } from "bun:test";
import { OccasionalLine } from "../../src/log/occasional-line.ts";

test("the first occurrence is due at once; the next ones wait out the interval and are reported with it", async () => {
  const line = new OccasionalLine(40);
  expect(line.due()).toBe(1);
  expect([line.due(), line.due(3)]).toEqual([undefined, undefined]);
  await Bun.sleep(50);
  expect(line.due()).toBe(5);
  expect(line.due()).toBeUndefined();
});
