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
export type ScanFailure = typeof SYNTAX_ERROR | typeof DEPTH_ERROR;

/** Byte range [start, end) of a value. */
export interface Span {
  start: number;
  end: number;
}

/** A record scanned from a body: its span, and the spans of its top-level `data` and `ts` members. */
export interface RecordSpans extends Span {
  data: Span | undefined;
  ts: Span | undefined;
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

const isDigit = (byte: number) => byte >= ZERO && byte <= NINE;
const isHex = (byte: number) =>
  (byte >= ZERO && byte <= NINE) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66);
const isWhitespace = (byte: number) => byte === SPACE || byte === LF || byte === CR || byte === TAB;

export class JsonScanner {
  /** Current position; callers move it between values (after a comma, past a newline). */
  pos = 0;

  constructor(
    readonly bytes: Uint8Array,
    private readonly maxDepth: number = MAX_JSON_DEPTH,
  ) {}

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
    if (this.peek() !== OPEN_BRACE) {
      this.scanValueOrSkip(start, 0);
      return { start, end: this.pos, data: undefined, ts: undefined };
    }
    let data: Span | undefined;
    let ts: Span | undefined;
    try {
      this.pos++;
      this.skipWhitespace();
      if (this.peek() === CLOSE_BRACE) {
        this.pos++;
        return { start, end: this.pos, data, ts };
      }
      for (;;) {
        this.skipWhitespace();
        const key = this.memberKey();
        this.skipWhitespace();
        this.expect(COLON);
        this.skipWhitespace();
        const valueStart = this.pos;
        this.scanValue(1);
        if (key === "data") data = { start: valueStart, end: this.pos };
        else if (key === "ts") ts = { start: valueStart, end: this.pos };
        this.skipWhitespace();
        const next = this.bytes[this.pos++];
        if (next === CLOSE_BRACE) return { start, end: this.pos, data, ts };
        if (next !== COMMA) throw SYNTAX_ERROR;
      }
    } catch (failure) {
      if (failure === DEPTH_ERROR) this.skipBalanced(start);
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
      if (failure === DEPTH_ERROR) this.skipBalanced(start);
      throw failure;
    }
  }

  /** Reads an object key; returns "data", "ts", or "" for any other key. */
  private memberKey(): "data" | "ts" | "" {
    const start = this.pos;
    const escaped = this.scanString();
    const length = this.pos - start - 2;
    if (escaped) {
      // A key spelled with escapes ("d\u0061ta") is still that key for JSON.parse.
      const key = JSON.parse(new TextDecoder().decode(this.bytes.subarray(start, this.pos))) as string;
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
    for (;;) {
      this.skipWhitespace();
      if (this.peek() !== QUOTE) throw SYNTAX_ERROR;
      this.scanString();
      this.skipWhitespace();
      this.expect(COLON);
      this.skipWhitespace();
      this.scanValue(depth);
      this.skipWhitespace();
      const next = this.bytes[this.pos++];
      if (next === CLOSE_BRACE) return;
      if (next !== COMMA) throw SYNTAX_ERROR;
    }
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
    let pos = this.pos;
    if (bytes[pos] === MINUS) pos++;
    if (bytes[pos] === ZERO) pos++;
    else if (isDigit(bytes[pos] as number)) while (isDigit(bytes[pos] as number)) pos++;
    else throw SYNTAX_ERROR;
    if (bytes[pos] === DOT) {
      pos++;
      if (!isDigit(bytes[pos] as number)) throw SYNTAX_ERROR;
      while (isDigit(bytes[pos] as number)) pos++;
    }
    if (bytes[pos] === LOWER_E || bytes[pos] === UPPER_E) {
      pos++;
      if (bytes[pos] === PLUS || bytes[pos] === MINUS) pos++;
      if (!isDigit(bytes[pos] as number)) throw SYNTAX_ERROR;
      while (isDigit(bytes[pos] as number)) pos++;
    }
    this.pos = pos;
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
  const scanner = new JsonScanner(bytes, maxDepth);
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
