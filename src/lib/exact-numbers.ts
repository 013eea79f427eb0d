import { isExactDouble } from "./decimal.ts";

/**
 * The numbers of a parsed JSON value whose text is not exactly their double,
 * by where they sit: container (object or array) → member name or index →
 * the number's text as sent. A validator looks a number up by its parent and
 * property to compare the text, not the rounded double.
 */
export type ExactNumbers = WeakMap<object, Map<string | number, string>>;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Pairs `text` (one JSON value that the strict scanner accepted, without
 * duplicate keys) with `value` (JSON.parse of it) and collects the numbers
 * whose text JSON.parse rounded. Only called for records (and schema texts)
 * the scanner marked, so its cost is off the usual path; nesting is bounded by
 * the scanner's limit.
 * `found` gathers the numbers of several texts in one map (a folder of schemas).
 */
export function exactNumbersOf(
  text: string,
  value: unknown,
  found: ExactNumbers = new WeakMap(),
): ExactNumbers {
  let pos = 0;
  const skipWhitespace = () => {
    while (pos < text.length && " \t\n\r".includes(text[pos] as string)) pos++;
  };
  /** Moves past the string at `pos` and returns its text, quotes included. */
  const stringText = (): string => {
    const start = pos;
    pos++;
    while (text.charCodeAt(pos) !== QUOTE) pos += text.charCodeAt(pos) === BACKSLASH ? 2 : 1;
    pos++;
    return text.slice(start, pos);
  };
  const note = (container: object, member: string | number, numberText: string) => {
    let members = found.get(container);
    if (!members) {
      members = new Map();
      found.set(container, members);
    }
    members.set(member, numberText);
  };
  const walk = (current: unknown, container: object | undefined, member: string | number): void => {
    skipWhitespace();
    const first = text[pos];
    if (first === "{") {
      pos++;
      skipWhitespace();
      if (text[pos] === "}") {
        pos++;
        return;
      }
      for (;;) {
        skipWhitespace();
        const key = JSON.parse(stringText()) as string;
        skipWhitespace();
        pos++; // the colon
        walk((current as Record<string, unknown>)[key], current as object, key);
        skipWhitespace();
        if (text[pos++] === "}") return;
      }
    }
    if (first === "[") {
      pos++;
      skipWhitespace();
      if (text[pos] === "]") {
        pos++;
        return;
      }
      for (let index = 0; ; index++) {
        walk((current as unknown[])[index], current as object, index);
        skipWhitespace();
        if (text[pos++] === "]") return;
      }
    }
    if (first === '"') {
      stringText();
      return;
    }
    const start = pos;
    while (pos < text.length && !",]} \t\n\r".includes(text[pos] as string)) pos++;
    if (typeof current !== "number" || container === undefined) return;
    const numberText = text.slice(start, pos);
    if (!isExactDouble(numberText)) note(container, member, numberText);
  };
  walk(value, undefined, "");
  return found;
}
