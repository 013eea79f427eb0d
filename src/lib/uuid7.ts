/**
 * UUIDv7 (RFC 9562) for record ids, without a system call per id: random bits
 * come from a pool filled by `crypto.getRandomValues` 4 KiB at a time.
 *
 * Monotonic within the process (RFC 9562 §6.2, method 1): the 12 bits of
 * `rand_a` and the first 30 of `rand_b` are a 42-bit counter, seeded at random
 * (top bit clear, so at least 2^41 increments fit) on each new millisecond and
 * incremented within one. If the clock goes back, the last timestamp is kept;
 * if the counter overflows, the timestamp moves on by 1 ms. The last 32 bits
 * are random for every id.
 */
const POOL_WORDS = 1024;
const pool = new Uint32Array(POOL_WORDS);
let poolIndex = POOL_WORDS;

const COUNTER_MAX = 2 ** 42 - 1;
const TWO_32 = 2 ** 32;
/** The two lower-case hex digits of each byte value, as character codes: byte b at 2b and 2b + 1. */
const HEX_DIGITS = new Uint8Array(512);
for (let byte = 0; byte < 256; byte++) {
  const digits = byte.toString(16).padStart(2, "0");
  HEX_DIGITS[2 * byte] = digits.charCodeAt(0);
  HEX_DIGITS[2 * byte + 1] = digits.charCodeAt(1);
}
const UUID_LENGTH = 36;
const DASH = 0x2d;

function randomWord(): number {
  if (poolIndex === POOL_WORDS) {
    crypto.getRandomValues(pool);
    poolIndex = 0;
  }
  return pool[poolIndex++] as number;
}

/** A random 41-bit counter start. */
function counterSeed(): number {
  return (randomWord() & 0x1ff) * TWO_32 + randomWord();
}

/**
 * One monotonic sequence of ids; the process uses `uuidv7`. Each id is
 * written as ASCII into the sequence's own 36 bytes and read out as one
 * string: joining its parts as strings made a string of ten pieces that
 * every later reader (the record's JSON, its UTF-8 length) had to flatten.
 */
export class Uuid7Sequence {
  private lastMs = -1;
  private counter = 0;
  /** The id being formatted; the timestamp's part ("tttttttt-tttt-") is rewritten on each new millisecond. */
  private readonly text = Buffer.alloc(UUID_LENGTH);

  next(now: number): string {
    if (now > this.lastMs) this.startMillisecond(now);
    else if (this.counter < COUNTER_MAX) this.counter++;
    else this.startMillisecond(this.lastMs + 1);
    writeRandom(this.text, this.counter, randomWord());
    return this.text.toString("latin1", 0, UUID_LENGTH);
  }

  private startMillisecond(ms: number): void {
    this.lastMs = ms;
    this.counter = counterSeed();
    writeTimestamp(this.text, ms);
  }
}

const sequence = new Uuid7Sequence();

export function uuidv7(): string {
  return sequence.next(Date.now());
}

/** Writes `byte` (0-255) as two hex digits at `at`. */
function putHex(text: Buffer, at: number, byte: number): void {
  text[at] = HEX_DIGITS[2 * byte] as number;
  text[at + 1] = HEX_DIGITS[2 * byte + 1] as number;
}

/** "tttttttt-tttt-": the 48-bit millisecond timestamp. */
function writeTimestamp(text: Buffer, ms: number): void {
  const msHigh = Math.floor(ms / TWO_32); // 16 bits
  const msLow = ms >>> 0; // 32 bits
  putHex(text, 0, msHigh >>> 8);
  putHex(text, 2, msHigh & 0xff);
  putHex(text, 4, msLow >>> 24);
  putHex(text, 6, (msLow >>> 16) & 0xff);
  text[8] = DASH;
  putHex(text, 9, (msLow >>> 8) & 0xff);
  putHex(text, 11, msLow & 0xff);
  text[13] = DASH;
}

/** The version, the counter, the variant and the random tail: "7ccc-vccc-cccc" + 8 random hex digits. */
function writeRandom(text: Buffer, counter: number, tail: number): void {
  const counterHigh = Math.floor(counter / TWO_32); // 10 bits
  const counterLow = counter >>> 0; // 32 bits
  // counter bits 41..30 go to rand_a (after the version), 29..0 to rand_b (after the variant).
  const randA = (counterHigh << 2) | (counterLow >>> 30);
  const randB = counterLow & 0x3fffffff;
  putHex(text, 14, 0x70 | (randA >>> 8));
  putHex(text, 16, randA & 0xff);
  text[18] = DASH;
  putHex(text, 19, 0x80 | (randB >>> 24));
  putHex(text, 21, (randB >>> 16) & 0xff);
  text[23] = DASH;
  putHex(text, 24, (randB >>> 8) & 0xff);
  putHex(text, 26, randB & 0xff);
  putHex(text, 28, tail >>> 24);
  putHex(text, 30, (tail >>> 16) & 0xff);
  putHex(text, 32, (tail >>> 8) & 0xff);
  putHex(text, 34, tail & 0xff);
}
