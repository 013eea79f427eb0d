/**
 * Exact decimal arithmetic on JSON number texts, for what a double cannot
 * hold: `1.0000000000000000001` and `9007199254740993` are what the client
 * sent, while JSON.parse gives 1 and 9007199254740992. Only comparisons and
 * divisibility are needed (schema bounds), so a number is kept as its
 * significant digits and a decimal exponent, never as a big value.
 */

/** value = (negative ? -1 : 1) × 0.d₁d₂d₃… × 10^exponent; `digits` has no leading or trailing zero ("" is zero). */
export interface Decimal {
  negative: boolean;
  digits: string;
  exponent: number;
}

/** A JSON number's text (or any `Number.prototype.toString` output) as a Decimal. */
export function parseDecimal(text: string): Decimal {
  let at = 0;
  const negative = text[0] === "-";
  if (negative) at++;
  let exponentAt = text.indexOf("e", at);
  if (exponentAt < 0) exponentAt = text.indexOf("E", at);
  const mantissa = text.slice(at, exponentAt < 0 ? text.length : exponentAt);
  const written = exponentAt < 0 ? 0 : Number(text.slice(exponentAt + 1));
  const dot = mantissa.indexOf(".");
  const integer = dot < 0 ? mantissa : mantissa.slice(0, dot);
  const all = dot < 0 ? mantissa : integer + mantissa.slice(dot + 1);
  let first = 0;
  while (first < all.length && all[first] === "0") first++;
  let last = all.length;
  while (last > first && all[last - 1] === "0") last--;
  const digits = all.slice(first, last);
  if (digits === "") return { negative: false, digits, exponent: 0 };
  return { negative, digits, exponent: written + integer.length - first };
}

function compareMagnitude(a: Decimal, b: Decimal): number {
  if (a.exponent !== b.exponent) return a.exponent < b.exponent ? -1 : 1;
  const length = Math.max(a.digits.length, b.digits.length);
  const left = a.digits.padEnd(length, "0");
  const right = b.digits.padEnd(length, "0");
  return left === right ? 0 : left < right ? -1 : 1;
}

/** -1, 0 or 1 as a < b, a = b, a > b. */
export function compareDecimal(a: Decimal, b: Decimal): number {
  const aZero = a.digits === "";
  const bZero = b.digits === "";
  if (aZero || bZero) {
    if (aZero && bZero) return 0;
    if (aZero) return b.negative ? 1 : -1;
    return a.negative ? -1 : 1;
  }
  if (a.negative !== b.negative) return a.negative ? -1 : 1;
  const magnitude = compareMagnitude(a, b);
  return a.negative ? 0 - magnitude : magnitude;
}

/** 10^power mod modulus, by squaring: an exponent of a billion costs 30 steps. */
function powerOfTenMod(power: number, modulus: bigint): bigint {
  let result = 1n % modulus;
  let base = 10n % modulus;
  let remaining = power;
  while (remaining > 0) {
    if (remaining % 2 === 1) result = (result * base) % modulus;
    base = (base * base) % modulus;
    remaining = Math.floor(remaining / 2);
  }
  return result;
}

/** Whether `value` / `divisor` is an integer (JSON Schema `multipleOf`; `divisor` > 0). */
export function isMultipleOf(value: Decimal, divisor: Decimal): boolean {
  if (value.digits === "") return true;
  if (divisor.digits === "") return false;
  // As integers: value = V × 10^v, divisor = D × 10^d.
  const v = value.exponent - value.digits.length;
  const d = divisor.exponent - divisor.digits.length;
  const integerValue = BigInt(value.digits);
  const integerDivisor = BigInt(divisor.digits);
  // A value smaller than the divisor (and not zero) is no multiple of it.
  if (compareMagnitude(value, divisor) < 0) return false;
  if (v >= d)
    return ((integerValue % integerDivisor) * powerOfTenMod(v - d, integerDivisor)) % integerDivisor === 0n;
  // v < d here, and |value| ≥ |divisor| bounds d - v by the value's digit count.
  return integerValue % (integerDivisor * 10n ** BigInt(d - v)) === 0n;
}

/**
 * Whether a JSON number's text is exactly the double JSON.parse makes of it,
 * as far as decimals go: the shortest text that round-trips that double
 * (`String(n)`) has the same value. `0.1` is exact in this sense (its double
 * prints as 0.1 and a schema's 0.1 is the same double), `1.0000000000000000001`
 * and `9007199254740993` are not, and neither is a number out of double range.
 */
export function isExactDouble(text: string): boolean {
  const value = Number(text);
  if (!Number.isFinite(value)) return false;
  return compareDecimal(parseDecimal(text), parseDecimal(String(value))) === 0;
}
