/**
 * Finds a `pattern` (or `patternProperties` name) that backtracks
 * catastrophically, `^(a+)+$` or `^(\w+\s?)*$`: JavaScript's regular
 * expressions run on the event loop and cannot be stopped, and such a
 * pattern takes time doubling with each character of a string that almost
 * matches: 30 characters freeze the process for a minute, every tenant's
 * traffic with it. The registry refuses such a set, as one that does not
 * compile, so the last good set stays in use.
 *
 * It is a measurement, not a proof: each pattern is run on strings that pump
 * one character (one the pattern names, or a usual one) then fail at the
 * end, and is refused when one of 32 characters or fewer takes longer than
 * a linear pattern takes on a string thousands of times as long. A pattern
 * that backtracks only on strings of another shape is not found.
 */

/** Keywords whose values are data, never subschemas, so a `pattern` inside means nothing. */
const DATA_KEYWORDS = new Set(["const", "enum", "default", "examples"]);
/** Characters pumped beside those the pattern writes: one of each usual class. */
const USUAL_CHARACTERS = ["a", "A", "0", " ", "-", "_", ".", "@", "\t"];
const PUMPED_LENGTHS = [12, 16, 20, 24, 28, 32];
/** What ends a probe, so that it almost matches: characters few patterns take at the end. */
const FAILING_ENDINGS = ["\u0000", "!"];
/** A probe of at most 32 characters that takes this long: a linear pattern takes microseconds. */
const TOO_SLOW_MS = 8;

/** Every regular expression a schema applies to strings: `pattern` values and `patternProperties` names. */
function patternsOf(node: unknown, found: Set<string>): void {
  if (Array.isArray(node)) {
    for (const item of node) patternsOf(item, found);
    return;
  }
  if (node === null || typeof node !== "object") return;
  for (const [key, value] of Object.entries(node)) {
    if (DATA_KEYWORDS.has(key)) continue;
    if (key === "pattern" && typeof value === "string") found.add(value);
    if (key === "patternProperties" && value !== null && typeof value === "object" && !Array.isArray(value))
      for (const name of Object.keys(value)) found.add(name);
    patternsOf(value, found);
  }
}

/** The characters a probe pumps: the letters, digits and punctuation the pattern writes, and the usual ones. */
function pumpedCharacters(pattern: string): string[] {
  const written = pattern.match(/[\p{L}\p{N}@.\-_ :/]/gu) ?? [];
  return [...new Set([...written, ...USUAL_CHARACTERS])];
}

/** What a string must start with to reach the rest of an anchored pattern: its leading plain letters. */
function leadingLiteral(pattern: string): string {
  const literal = /^\^([A-Za-z0-9_-]*)/.exec(pattern)?.[1] ?? "";
  // A letter a quantifier follows is not required.
  return /^[*+?{]/.test(pattern.slice(1 + literal.length)) ? literal.slice(0, -1) : literal;
}

function timeOf(expression: RegExp, text: string): number {
  const started = performance.now();
  expression.test(text);
  return performance.now() - started;
}

/** The length of a string it took too long on, if any; twice over, so a pause of the process is not taken for it. */
function tooSlowAt(expression: RegExp, prefix: string, character: string): number | undefined {
  for (const length of PUMPED_LENGTHS) {
    // Two endings, as a pattern's negated class (`[^!]+`) may take one of them.
    for (const ending of FAILING_ENDINGS) {
      const text = `${prefix}${character.repeat(length)}${ending}`;
      if (timeOf(expression, text) > TOO_SLOW_MS && timeOf(expression, text) > TOO_SLOW_MS) return length;
    }
  }
  return undefined;
}

/**
 * Throws naming the first pattern of `schema` that backtracks
 * catastrophically; `checked` holds the patterns found fine already (a set's
 * types often share theirs), and gets this schema's.
 */
export function checkPatternsRunInTime(schema: object, checked: Set<string>): void {
  const patterns = new Set<string>();
  patternsOf(schema, patterns);
  for (const pattern of patterns) {
    if (checked.has(pattern)) continue;
    let expression: RegExp;
    try {
      expression = new RegExp(pattern, "u"); // as ajv compiles it
    } catch {
      continue; // ajv says why it does not compile
    }
    const prefixes = [...new Set(["", leadingLiteral(pattern)])];
    for (const prefix of prefixes) {
      for (const character of pumpedCharacters(pattern)) {
        const length = tooSlowAt(expression, prefix, character);
        if (length === undefined) continue;
        throw new Error(
          `pattern ${JSON.stringify(pattern)} backtracks catastrophically: a string of ${length} characters took over ${TOO_SLOW_MS} ms, and each more character multiplies that`,
        );
      }
    }
    checked.add(pattern);
  }
}
