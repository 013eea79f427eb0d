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

/**
 * The top-level members of a record that ingest reads, as indexes into
 * `JsonScanner.members` (after `scanRecord`, the value of member `m` spans
 * `members[2m]` to `members[2m + 1]`, start -1 when the record has none).
 */
export const MEMBER = { data: 0, ts: 1, type: 2, id: 3, channel: 4, key: 5 } as const;
export type Member = (typeof MEMBER)[keyof typeof MEMBER];
const MEMBER_COUNT = 6;
const MEMBER_BY_NAME = new Map<string, Member>(Object.entries(MEMBER) as Array<[string, Member]>);
const NOT_A_MEMBER = -1;

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
const TYPE_KEY = [0x74, 0x79, 0x70, 0x65];
const ID_KEY = [0x69, 0x64];
const KEY_KEY = [0x6b, 0x65, 0x79];
const CHANNEL_KEY = [0x63, 0x68, 0x61, 0x6e, 0x6e, 0x65, 0x6c];

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
  /** After `scanRecord`: the record's span. */
  recordStart = 0;
  recordEnd = 0;
  /** After `scanRecord`: the spans of the record's members (see MEMBER); reused, not allocated per record. */
  readonly members = new Int32Array(2 * MEMBER_COUNT);
  /** After `scanRecord`: bit `m` is set when member `m` is a string holding escapes. */
  escapedMembers = 0;
  /**
   * After `scanRecord`: bit `m` is set when a string in member `m`'s value
   * holds a byte above 0x7f. A member without it is ASCII (JSON outside
   * strings is), so its bytes are already the UTF-8 of its decoded text,
   * whatever the rest of the body holds (invalid UTF-8 decodes to U+FFFD).
   */
  nonAsciiMembers = 0;
  /** Set by `scanString` when a string held a byte above 0x7f; cleared before each member's value. */
  private nonAscii = false;
  /**
   * The keys of the objects being scanned, innermost last, as pairs (start,
   * end) of their contents' byte range, end bitwise-negated when the key holds
   * escapes: a stack whose live part ends at `keysTop` (an object's keys are
   * dropped when it closes by moving the top, not by resizing the array,
   * which costs a runtime call). Its length is bounded by the nesting limit
   * times 2 × LINEAR_KEY_LIMIT: larger objects move their keys to a Set.
   */
  private readonly keys: number[] = [];
  private keysTop = 0;

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
    this.scanRecord();
    const members = this.members;
    const span = (member: Member): Span | undefined => {
      const start = members[2 * member] as number;
      return start < 0 ? undefined : { start, end: members[2 * member + 1] as number };
    };
    return {
      start: this.recordStart,
      end: this.recordEnd,
      data: span(MEMBER.data),
      ts: span(MEMBER.ts),
      inexactNumbers: this.inexact,
    };
  }

  /** Whether a number of the record last scanned is not exactly the double JSON.parse makes of it. */
  get inexactNumbers(): boolean {
    return this.inexact;
  }

  /**
   * `record()` without building its result: the spans land in `recordStart`,
   * `recordEnd`, `members` and `escapedMembers`, so a body of many records
   * allocates nothing for them.
   */
  scanRecord(): void {
    this.skipWhitespace();
    const start = this.pos;
    this.recordStart = start;
    this.inexact = false;
    this.escapedMembers = 0;
    this.nonAsciiMembers = 0;
    const members = this.members;
    for (let index = 0; index < 2 * MEMBER_COUNT; index += 2) members[index] = -1;
    this.keysTop = 0;
    if (this.peek() !== OPEN_BRACE) {
      this.scanValueOrSkip(start, 0);
      this.recordEnd = this.pos;
      return;
    }
    let seen: Set<string> | undefined;
    try {
      this.pos++;
      this.skipWhitespace();
      if (this.peek() === CLOSE_BRACE) {
        this.pos++;
        this.recordEnd = this.pos;
        return;
      }
      for (;;) {
        this.skipWhitespace();
        const keyStart = this.pos;
        const escaped = this.scanString();
        if (this.checkKeys) seen = this.noteKey(0, keyStart + 1, this.pos - 1, escaped, seen);
        const member = this.memberKey(keyStart, escaped);
        this.skipWhitespace();
        this.expect(COLON);
        this.skipWhitespace();
        const valueStart = this.pos;
        if (member === NOT_A_MEMBER) this.scanValue(1);
        else {
          // A string member's escapes are noted, so its text is decoded without JSON.parse when it has none.
          let escapes = false;
          this.nonAscii = false;
          if (this.bytes[valueStart] === QUOTE) escapes = this.scanString();
          else this.scanValue(1);
          if (escapes) this.escapedMembers |= 1 << member;
          else this.escapedMembers &= ~(1 << member);
          if (this.nonAscii) this.nonAsciiMembers |= 1 << member;
          else this.nonAsciiMembers &= ~(1 << member);
          members[2 * member] = valueStart;
          members[2 * member + 1] = this.pos;
        }
        this.skipWhitespace();
        const next = this.bytes[this.pos++];
        if (next === CLOSE_BRACE) {
          this.recordEnd = this.pos;
          return;
        }
        if (next !== COMMA) throw SYNTAX_ERROR;
      }
    } catch (failure) {
      if (failure === DEPTH_ERROR || failure === DUPLICATE_KEY_ERROR) this.skipChecked(start);
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
      if (failure === DEPTH_ERROR || failure === DUPLICATE_KEY_ERROR) this.skipChecked(start);
      throw failure;
    }
  }

  /** The member the object key just scanned names (from `start`, its opening quote), or NOT_A_MEMBER. */
  private memberKey(start: number, escaped: boolean): Member | typeof NOT_A_MEMBER {
    if (escaped) {
      // A key spelled with escapes ("d\u0061ta") is still that key for JSON.parse.
      return MEMBER_BY_NAME.get(this.keyText(start + 1, this.pos - 1, true)) ?? NOT_A_MEMBER;
    }
    const at = start + 1;
    switch (this.pos - start - 2) {
      case 2:
        if (this.matches(at, TS_KEY)) return MEMBER.ts;
        return this.matches(at, ID_KEY) ? MEMBER.id : NOT_A_MEMBER;
      case 3:
        return this.matches(at, KEY_KEY) ? MEMBER.key : NOT_A_MEMBER;
      case 4:
        if (this.matches(at, DATA_KEY)) return MEMBER.data;
        return this.matches(at, TYPE_KEY) ? MEMBER.type : NOT_A_MEMBER;
      case 7:
        return this.matches(at, CHANNEL_KEY) ? MEMBER.channel : NOT_A_MEMBER;
      default:
        return NOT_A_MEMBER;
    }
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
    const keysBase = this.keysTop;
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
        this.keysTop = keysBase;
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
    const top = this.keysTop;
    if (seen === undefined && top - base >= 2 * LINEAR_KEY_LIMIT) {
      seen = new Set();
      for (let index = base; index < top; index += 2) {
        const storedEnd = keys[index + 1] as number;
        seen.add(this.keyText(keys[index] as number, storedEnd < 0 ? ~storedEnd : storedEnd, storedEnd < 0));
      }
      this.keysTop = base;
    }
    if (seen !== undefined) {
      const key = this.keyText(start, end, escaped);
      if (seen.has(key)) this.duplicate(key);
      seen.add(key);
      return seen;
    }
    for (let index = base; index < top; index += 2) {
      if (this.sameKey(keys[index] as number, keys[index + 1] as number, start, end, escaped))
        this.duplicate(this.keyText(start, end, escaped));
    }
    keys[top] = start;
    keys[top + 1] = escaped ? ~end : end;
    this.keysTop = top + 2;
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
    // Every byte ORed in: above 0x7f at the end when any byte was.
    let high = 0;
    for (;;) {
      if (pos >= bytes.length) throw SYNTAX_ERROR;
      const byte = bytes[pos] as number;
      high |= byte;
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
    if (high > 0x7f) this.nonAscii = true;
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
   * After DEPTH_ERROR or DUPLICATE_KEY_ERROR: moves past the value that
   * started at `start`, checking its grammar without recursion (a stack of
   * the open containers instead), so the record is refused for its nesting or
   * its key only when it is JSON. Throws SYNTAX_ERROR when it is not: a
   * malformed body is a malformed body, however deep or repeated its keys.
   */
  private skipChecked(start: number): void {
    this.pos = start;
    const open: number[] = [];
    for (;;) {
      this.skipWhitespace();
      const byte = this.peek();
      if (byte === OPEN_BRACE || byte === OPEN_BRACKET) {
        this.pos++;
        this.skipWhitespace();
        if (this.peek() === (byte === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET)) this.pos++;
        else {
          open.push(byte);
          if (byte === OPEN_BRACE) this.skipKey();
          continue;
        }
      } else this.scanValue(0);
      // After a value: close what it ends, until a comma asks for the next value.
      for (;;) {
        if (open.length === 0) return;
        this.skipWhitespace();
        const next = this.bytes[this.pos++];
        const container = open[open.length - 1];
        if (next === COMMA) {
          if (container === OPEN_BRACE) this.skipKey();
          break;
        }
        if (next !== (container === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET)) throw SYNTAX_ERROR;
        open.pop();
      }
    }
  }

  /** An object's key and its colon, during `skipChecked`. */
  private skipKey(): void {
    this.skipWhitespace();
    if (this.peek() !== QUOTE) throw SYNTAX_ERROR;
    this.scanString();
    this.skipWhitespace();
    this.expect(COLON);
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
