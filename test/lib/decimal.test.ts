import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { compareDecimal, isExactDouble, isMultipleOf, parseDecimal } from "../../src/lib/decimal.ts";

const compare = (a: string, b: string) => compareDecimal(parseDecimal(a), parseDecimal(b));
const multiple = (a: string, b: string) => isMultipleOf(parseDecimal(a), parseDecimal(b));

describe("decimal", () => {
  test("parses JSON number texts to digits and exponent", () => {
    expect(parseDecimal("120.50")).toEqual({ negative: false, digits: "1205", exponent: 3 });
    expect(parseDecimal("-0.0012e2")).toEqual({ negative: true, digits: "12", exponent: 0 });
    expect(parseDecimal("-0.0")).toEqual({ negative: false, digits: "", exponent: 0 });
    expect(parseDecimal("1e+21")).toEqual({ negative: false, digits: "1", exponent: 22 });
  });

  test("compares exactly, beyond a double's precision", () => {
    expect(compare("1.0000000000000000001", "1")).toBe(1);
    expect(compare("9007199254740993", "9007199254740992")).toBe(1);
    expect(compare("0.99999999999999999999", "1")).toBe(-1);
    expect(compare("-1.5", "-1.50")).toBe(0);
    expect(compare("-2", "1")).toBe(-1);
    expect(compare("0", "-0.0")).toBe(0);
    expect(compare("1e400", "1e308")).toBe(1);
    expect(compare("-1e-400", "0")).toBe(-1);
  });

  test("agrees with doubles wherever doubles are exact", () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer(), (a, b) => {
        expect(compare(String(a), String(b))).toBe(Math.sign(a - b));
      }),
    );
    fc.assert(
      fc.property(
        fc.double({ noNaN: true, noDefaultInfinity: true }),
        fc.double({ noNaN: true, noDefaultInfinity: true }),
        (a, b) => {
          expect(compare(String(a), String(b))).toBe(a < b ? -1 : a > b ? 1 : 0);
        },
      ),
    );
  });

  test("multipleOf exactly, any exponent", () => {
    expect(multiple("9007199254740993", "2")).toBe(false);
    expect(multiple("9007199254740994", "2")).toBe(true);
    expect(multiple("0.30000000000000000001", "0.1")).toBe(false);
    expect(multiple("0.3", "0.1")).toBe(true);
    expect(multiple("1e1000000000", "7")).toBe(false);
    expect(multiple("1e1000000000", "8")).toBe(true);
    expect(multiple("0.05", "0.1")).toBe(false);
    expect(multiple("0", "3")).toBe(true);
    expect(multiple("-12", "4")).toBe(true);
  });

  test("a number is exact when its double prints as the same value", () => {
    for (const text of ["0", "1", "1.0", "0.1", "-12.5e3", "9007199254740992", "1e21", "123456789012345"])
      expect({ text, exact: isExactDouble(text) }).toEqual({ text, exact: true });
    for (const text of [
      "1.0000000000000000001",
      "9007199254740993",
      "1e400",
      "1e-400",
      "0.1000000000000000001",
    ])
      expect({ text, exact: isExactDouble(text) }).toEqual({ text, exact: false });
  });
});
