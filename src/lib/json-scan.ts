import { isExactDouble } from "./decimal.ts";

/**
 * A strict JSON scanner over UTF-8 bytes (RFC 8259 grammar), with a nesting
 * limit. It builds no values: it finds where values sit, so that
 *
 * - a record's `data` (and `ts`) can be carried as the exact bytes the client
 *   sent (JSON.parse would round integers beyond 2^53 and rewrite numbers), and
 * - hostile input is refused cheaply before JSON.parse, ajv or JSON.stringify
 *   recurse into it (deep nesting costs seconds or a RangeError there).
 *
 * Structural characters are ASCII, so scanning bytes needs no decoding.
 * Failures throw one of two preallocated sentinels: no stack is captured, so a
 * body of many bad lines stays cheap.
 */

/** Nesting allowed in one record (the record object itself is level 1). */
export const MAX_JSON_DEPTH = 64;
export const TOO_DEEP_REASON = `nesting deeper than ${MAX_JSON_DEPTH} levels`;

export const SYNTAX_ERROR: unique symbol = Symbol("json syntax error");
export const DEPTH_ERROR: unique symbol = Symbol("json nesting too deep");
/** Thrown only by a scanner that checks keys; the key is then in `duplicateKey`. */
export const DUPLICATE_KEY_ERROR: unique symbol = Symbol("json duplicate key");
export type ScanFailure = typeof SYNTAX_ERROR | typeof DEPTH_ERROR;

/** Up to this many keys an object's keys are compared byte by byte; past it, through a Set. */
const LINEAR_KEY_LIMIT = 16;
/** A duplicate key is named in the reason up to this many characters. */
const MAX_KEY_IN_REASON = 64;
/** A number of at most this many digits and no exponent is always exactly its double (DBL_DIG). */
const ALWAYS_EXACT_DIGITS = 15;

export interface ScannerOptions {
  maxDepth?: number;
  /**
   * Refuse an object holding the same key twice (DUPLICATE_KEY_ERROR):
   * JSON.parse keeps the last one, a consumer of the forwarded bytes may take
   * the first, so what was validated would not be what is read.
   */
  rejectDuplicateKeys?: boolean;
}

/** Byte range [start, end) of a value. */
export interface Span {
  start: number;
  end: number;
}

/** A record scanned from a body: its span, and the spans of its top-level `data` and `ts` members. */
export interface RecordSpans extends Span {
  data: Span | undefined;
  ts: Span | undefined;
  /** Some number in the record is not exactly the double JSON.parse makes of it (see `isExactDouble`). */
  inexactNumbers: boolean;
}

const SPACE = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;
const LOWER_E = 0x65;
const UPPER_E = 0x45;
const LOWER_U = 0x75;

const TRUE = [0x74, 0x72, 0x75, 0x65];
const FALSE = [0x66, 0x61, 0x6c, 0x73, 0x65];
const NULL = [0x6e, 0x75, 0x6c, 0x6c];
const DATA_KEY = [0x64, 0x61, 0x74, 0x61];
const TS_KEY = [0x74, 0x73];

/** Characters allowed after a backslash in a string: " \ / b f n r t (u is handled apart). */
const SIMPLE_ESCAPES = new Set([0x22, 0x5c, 0x2f, 0x62, 0x66, 0x6e, 0x72, 0x74]);

const utf8 = new TextDecoder();

const isDigit = (byte: number) => byte >= ZERO && byte <= NINE;
const isHex = (byte: number) =>
  (byte >= ZERO && byte <= NINE) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66);
const isWhitespace = (byte: number) => byte === SPACE || byte === LF || byte === CR || byte === TAB;

export class JsonScanner {
  /** Current position; callers move it between values (after a comma, past a newline). */
  pos = 0;
  /** After DUPLICATE_KEY_ERROR: the key seen twice. */
  duplicateKey = "";
  private readonly maxDepth: number;
  private readonly checkKeys: boolean;
  /** Set when a number scanned since the last `record()` is not exactly its double. */
  private inexact = false;
  /**
   * The keys of the objects being scanned, innermost last, as pairs (start,
   * end) of their contents' byte range, end bitwise-negated when the key holds
   * escapes (a stack: an object's keys are dropped when it closes).
   */
  private readonly keys: number[] = [];

  constructor(
    readonly bytes: Uint8Array,
    options: ScannerOptions = {},
  ) {
    this.maxDepth = options.maxDepth ?? MAX_JSON_DEPTH;
    this.checkKeys = options.rejectDuplicateKeys ?? false;
  }

  skipWhitespace(): void {
    const bytes = this.bytes;
    let pos = this.pos;
    while (pos < bytes.length && isWhitespace(bytes[pos] as number)) pos++;
    this.pos = pos;
  }

  /** The byte at the current position, or -1 at the end. */
  peek(): number {
    return this.pos < this.bytes.length ? (this.bytes[this.pos] as number) : -1;
  }

  /** Scans one value at the current position (after whitespace) and returns its span. */
  value(): Span {
    this.skipWhitespace();
    const start = this.pos;
    this.scanValue(0);
    return { start, end: this.pos };
  }

  /**
   * Scans one record: any value, and for an object the spans of its `data`
   * and `ts` members (the last one wins, as in JSON.parse). On DEPTH_ERROR the
   * position is already past the record, so the caller can go on with the next.
   */
  record(): RecordSpans {
    this.skipWhitespace();
    const start = this.pos;
    this.inexact = false;
    if (this.keys.length !== 0) this.keys.length = 0;
    if (this.peek() !== OPEN_BRACE) {
      this.scanValueOrSkip(start, 0);
      return { start, end: this.pos, data: undefined, ts: undefined, inexactNumbers: this.inexact };
    }
    let data: Span | undefined;
    let ts: Span | undefined;
    let seen: Set<string> | undefined;
    try {
      this.pos++;
      this.skipWhitespace();
      if (this.peek() === CLOSE_BRACE) {
        this.pos++;
        return { start, end: this.pos, data, ts, inexactNumbers: false };
      }
      for (;;) {
        this.skipWhitespace();
        const keyStart = this.pos;
        const escaped = this.scanString();
        if (this.checkKeys) seen = this.noteKey(0, keyStart + 1, this.pos - 1, escaped, seen);
        const key = this.memberKey(keyStart, escaped);
        this.skipWhitespace();
        this.expect(COLON);
        this.skipWhitespace();
        const valueStart = this.pos;
        this.scanValue(1);
        if (key === "data") data = { start: valueStart, end: this.pos };
        else if (key === "ts") ts = { start: valueStart, end: this.pos };
        this.skipWhitespace();
        const next = this.bytes[this.pos++];
        if (next === CLOSE_BRACE) return { start, end: this.pos, data, ts, inexactNumbers: this.inexact };
        if (next !== COMMA) throw SYNTAX_ERROR;
      }
    } catch (failure) {
      if (failure === DEPTH_ERROR || failure === DUPLICATE_KEY_ERROR) this.skipBalanced(start);
      throw failure;
    }
  }

  /** Throws SYNTAX_ERROR unless only whitespace is left. */
  end(): void {
    this.skipWhitespace();
    if (this.pos !== this.bytes.length) throw SYNTAX_ERROR;
  }

  expect(byte: number): void {
    if (this.bytes[this.pos] !== byte) throw SYNTAX_ERROR;
    this.pos++;
  }

  private scanValueOrSkip(start: number, depth: number): void {
    try {
      this.scanValue(depth);
    } catch (failure) {
      if (failure === DEPTH_ERROR || failure === DUPLICATE_KEY_ERROR) this.skipBalanced(start);
      throw failure;
    }
  }

  /** The object key just scanned (from `start`, its opening quote): "data", "ts", or "" for any other key. */
  private memberKey(start: number, escaped: boolean): "data" | "ts" | "" {
    const length = this.pos - start - 2;
    if (escaped) {
      // A key spelled with escapes ("d\u0061ta") is still that key for JSON.parse.
      const key = this.keyText(start + 1, this.pos - 1, true);
      return key === "data" || key === "ts" ? key : "";
    }
    if (length === 4 && this.matches(start + 1, DATA_KEY)) return "data";
    if (length === 2 && this.matches(start + 1, TS_KEY)) return "ts";
    return "";
  }

  private matches(at: number, word: number[]): boolean {
    for (let index = 0; index < word.length; index++) {
      if (this.bytes[at + index] !== word[index]) return false;
    }
    return true;
  }

  private scanValue(depth: number): void {
    const byte = this.peek();
    if (byte === OPEN_BRACE) this.scanObject(depth + 1);
    else if (byte === OPEN_BRACKET) this.scanArray(depth + 1);
    else if (byte === QUOTE) this.scanString();
    else if (byte === MINUS || isDigit(byte)) this.scanNumber();
    else if (byte === 0x74) this.literal(TRUE);
    else if (byte === 0x66) this.literal(FALSE);
    else if (byte === 0x6e) this.literal(NULL);
    else throw SYNTAX_ERROR;
  }

  private scanObject(depth: number): void {
    if (depth > this.maxDepth) throw DEPTH_ERROR;
    this.pos++;
    this.skipWhitespace();
    if (this.peek() === CLOSE_BRACE) {
      this.pos++;
      return;
    }
    const keysBase = this.keys.length;
    let seen: Set<string> | undefined;
    for (;;) {
      this.skipWhitespace();
      if (this.peek() !== QUOTE) throw SYNTAX_ERROR;
      const keyStart = this.pos;
      const escaped = this.scanString();
      if (this.checkKeys) seen = this.noteKey(keysBase, keyStart + 1, this.pos - 1, escaped, seen);
      this.skipWhitespace();
      this.expect(COLON);
      this.skipWhitespace();
      this.scanValue(depth);
      this.skipWhitespace();
      const next = this.bytes[this.pos++];
      if (next === CLOSE_BRACE) {
        if (this.checkKeys) this.keys.length = keysBase;
        return;
      }
      if (next !== COMMA) throw SYNTAX_ERROR;
    }
  }

  /**
   * Remembers a key of the object whose keys start at `base` on the stack;
   * throws DUPLICATE_KEY_ERROR when the object has it already. Small objects
   * compare bytes (no string is made); past LINEAR_KEY_LIMIT keys the object
   * gets a Set, returned for its next keys.
   */
  private noteKey(
    base: number,
    start: number,
    end: number,
    escaped: boolean,
    seen: Set<string> | undefined,
  ): Set<string> | undefined {
    const keys = this.keys;
    if (seen === undefined && keys.length - base >= 2 * LINEAR_KEY_LIMIT) {
      seen = new Set();
      for (let index = base; index < keys.length; index += 2) {
        const storedEnd = keys[index + 1] as number;
        seen.add(this.keyText(keys[index] as number, storedEnd < 0 ? ~storedEnd : storedEnd, storedEnd < 0));
      }
      keys.length = base;
    }
    if (seen !== undefined) {
      const key = this.keyText(start, end, escaped);
      if (seen.has(key)) this.duplicate(key);
      seen.add(key);
      return seen;
    }
    for (let index = base; index < keys.length; index += 2) {
      if (this.sameKey(keys[index] as number, keys[index + 1] as number, start, end, escaped))
        this.duplicate(this.keyText(start, end, escaped));
    }
    keys.push(start, escaped ? ~end : end);
    return undefined;
  }

  /** Whether the key stored as (otherStart, storedEnd) is the key at [start, end). */
  private sameKey(
    otherStart: number,
    storedEnd: number,
    start: number,
    end: number,
    escaped: boolean,
  ): boolean {
    const otherEscaped = storedEnd < 0;
    const otherEnd = otherEscaped ? ~storedEnd : storedEnd;
    if (escaped || otherEscaped) {
      // "a" and "\u0061" are one key for JSON.parse.
      return this.keyText(start, end, escaped) === this.keyText(otherStart, otherEnd, otherEscaped);
    }
    if (end - start !== otherEnd - otherStart) return false;
    const bytes = this.bytes;
    for (let offset = 0; offset < end - start; offset++) {
      if (bytes[start + offset] !== bytes[otherStart + offset]) return false;
    }
    return true;
  }

  /** The key whose contents (between the quotes) are bytes [start, end). */
  private keyText(start: number, end: number, escaped: boolean): string {
    return escaped
      ? (JSON.parse(utf8.decode(this.bytes.subarray(start - 1, end + 1))) as string)
      : utf8.decode(this.bytes.subarray(start, end));
  }

  private duplicate(key: string): never {
    this.duplicateKey = key.length > MAX_KEY_IN_REASON ? `${key.slice(0, MAX_KEY_IN_REASON)}…` : key;
    throw DUPLICATE_KEY_ERROR;
  }

  private scanArray(depth: number): void {
    if (depth > this.maxDepth) throw DEPTH_ERROR;
    this.pos++;
    this.skipWhitespace();
    if (this.peek() === CLOSE_BRACKET) {
      this.pos++;
      return;
    }
    for (;;) {
      this.skipWhitespace();
      this.scanValue(depth);
      this.skipWhitespace();
      const next = this.bytes[this.pos++];
      if (next === CLOSE_BRACKET) return;
      if (next !== COMMA) throw SYNTAX_ERROR;
    }
  }

  /** Scans a string at the current position; returns whether it holds escapes. */
  private scanString(): boolean {
    const bytes = this.bytes;
    if (bytes[this.pos] !== QUOTE) throw SYNTAX_ERROR;
    let pos = this.pos + 1;
    let escaped = false;
    for (;;) {
      if (pos >= bytes.length) throw SYNTAX_ERROR;
      const byte = bytes[pos] as number;
      if (byte === QUOTE) break;
      if (byte < SPACE) throw SYNTAX_ERROR;
      if (byte === BACKSLASH) {
        escaped = true;
        const next = bytes[pos + 1] as number;
        if (next === LOWER_U) {
          for (let index = 2; index < 6; index++) {
            if (!isHex(bytes[pos + index] as number)) throw SYNTAX_ERROR;
          }
          pos += 6;
          continue;
        }
        if (!SIMPLE_ESCAPES.has(next)) throw SYNTAX_ERROR;
        pos += 2;
        continue;
      }
      pos++;
    }
    this.pos = pos + 1;
    return escaped;
  }

  private scanNumber(): void {
    const bytes = this.bytes;
    const start = this.pos;
    let pos = start;
    if (bytes[pos] === MINUS) pos++;
    const digitsStart = pos;
    if (bytes[pos] === ZERO) pos++;
    else if (isDigit(bytes[pos] as number)) while (isDigit(bytes[pos] as number)) pos++;
    else throw SYNTAX_ERROR;
    let digits = pos - digitsStart;
    if (bytes[pos] === DOT) {
      pos++;
      if (!isDigit(bytes[pos] as number)) throw SYNTAX_ERROR;
      const fractionStart = pos;
      while (isDigit(bytes[pos] as number)) pos++;
      digits += pos - fractionStart;
    }
    let exponent = false;
    if (bytes[pos] === LOWER_E || bytes[pos] === UPPER_E) {
      exponent = true;
      pos++;
      if (bytes[pos] === PLUS || bytes[pos] === MINUS) pos++;
      if (!isDigit(bytes[pos] as number)) throw SYNTAX_ERROR;
      while (isDigit(bytes[pos] as number)) pos++;
    }
    this.pos = pos;
    // The usual number is short: exact without looking closer.
    if ((exponent || digits > ALWAYS_EXACT_DIGITS) && !this.inexact)
      this.inexact = !isExactDouble(utf8.decode(bytes.subarray(start, pos)));
  }

  private literal(word: number[]): void {
    if (!this.matches(this.pos, word)) throw SYNTAX_ERROR;
    this.pos += word.length;
  }

  /**
   * After DEPTH_ERROR: moves past the value that started at `start` by
   * counting brackets outside strings, without recursion. Throws SYNTAX_ERROR
   * if the brackets never balance.
   */
  private skipBalanced(start: number): void {
    const bytes = this.bytes;
    let depth = 0;
    let pos = start;
    while (pos < bytes.length) {
      const byte = bytes[pos++] as number;
      if (byte === QUOTE) {
        while (pos < bytes.length && bytes[pos] !== QUOTE) pos += bytes[pos] === BACKSLASH ? 2 : 1;
        pos++;
      } else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) depth++;
      else if (byte === CLOSE_BRACE || byte === CLOSE_BRACKET) {
        depth--;
        if (depth === 0) {
          this.pos = pos;
          return;
        }
      }
    }
    throw SYNTAX_ERROR;
  }
}

/** Why `bytes` is not exactly one JSON value within the nesting limit, or undefined when it is. */
export function jsonProblem(bytes: Uint8Array, maxDepth: number = MAX_JSON_DEPTH): ScanFailure | undefined {
  const scanner = new JsonScanner(bytes, { maxDepth });
  try {
    scanner.value();
    scanner.end();
    return undefined;
  } catch (failure) {
    return failure === DEPTH_ERROR ? DEPTH_ERROR : SYNTAX_ERROR;
  }
}

/** True when `bytes` is exactly one JSON value within the nesting limit. */
export function isJsonValue(bytes: Uint8Array, maxDepth: number = MAX_JSON_DEPTH): boolean {
  return jsonProblem(bytes, maxDepth) === undefined;
}
