import { describe, expect, test } from "bun:test";
import { checkPatternsRunInTime } from "../../../src/infra/validation/backtracking.ts";

const refusal = (schema: object) => {
  try {
    checkPatternsRunInTime(schema, new Set());
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
};

describe("patterns that backtrack catastrophically", () => {
  test("are found, in `pattern` and `patternProperties`, at any depth, naming the pattern", () => {
    const catastrophic = [
      "^(a+)+$",
      "^(\\w+\\s?)*$",
      "(a|a)*b",
      "^(a|aa)+$",
      "^(\\d+)*$",
      "^x(a*)*y$",
      "^([^@]+)+@x$",
      "^([a-zA-Z0-9])(([\\-.]|[_]+)?([a-zA-Z0-9]+))*(@){1}[a-z0-9]+[.]{1}(([a-z]{2,3})|([a-z]{2,3}[.]{1}[a-z]{2,3}))$",
    ];
    for (const pattern of catastrophic) {
      expect(refusal({ type: "string", pattern })).toStartWith(
        `pattern ${JSON.stringify(pattern)} backtracks catastrophically: a string of `,
      );
    }
    expect(refusal({ properties: { a: { items: { pattern: "^(a+)+$" } } } })).toContain('"^(a+)+$"');
    expect(refusal({ patternProperties: { "^(a|a)+$": { type: "string" } } })).toContain('"^(a|a)+$"');
  });

  test("usual patterns, and patterns that are data, pass in about a millisecond each", () => {
    const usual = [
      "^[A-Z]{3}$",
      "^([a-z0-9]+\\.)*[a-z0-9]+$",
      "^[a-z0-9-]+(\\.[a-z0-9-]+)*$",
      "^\\d{4}-\\d{2}-\\d{2}$",
      "^https?://[^\\s]+$",
      "^[\\w.+-]+@[\\w-]+\\.[\\w.]+$",
      "^(\\+|-)?\\d+(\\.\\d+)?$",
      "^(?:[a-z]|_)*$",
      "^\\p{L}+$",
      "^(a|b|c)*d$",
      "^(?:(?:25[0-5]|2[0-4]\\d|1?\\d?\\d)\\.){3}(?:25[0-5]|2[0-4]\\d|1?\\d?\\d)$",
      "(", // does not compile: ajv says so
    ];
    const started = performance.now();
    for (const pattern of usual) expect(refusal({ type: "string", pattern })).toBeUndefined();
    expect(refusal({ const: { pattern: "^(a+)+$" }, examples: [{ pattern: "^(a+)+$" }] })).toBeUndefined();
    expect(performance.now() - started).toBeLessThan(200);
  });

  test("a pattern found fine is not run again", () => {
    const checked = new Set<string>();
    checkPatternsRunInTime({ pattern: "^[a-z]+$" }, checked);
    expect([...checked]).toEqual(["^[a-z]+$"]);
    checked.add("^(a+)+$"); // as if found fine: not measured
    expect(() => checkPatternsRunInTime({ pattern: "^(a+)+$" }, checked)).not.toThrow();
  });
});
