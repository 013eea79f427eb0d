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
const HEX = Array.from({ length: 256 }, (_, byte) => byte.toString(16).padStart(2, "0"));

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

/** One monotonic sequence of ids; the process uses `uuidv7`. */
export class Uuid7Sequence {
  private lastMs = -1;
  private counter = 0;
  /** The timestamp's hex, "tttttttt-tttt-", shared by every id of one millisecond. */
  private prefix = "";

  next(now: number): string {
    if (now > this.lastMs) this.startMillisecond(now);
    else if (this.counter < COUNTER_MAX) this.counter++;
    else this.startMillisecond(this.lastMs + 1);
    return this.prefix + formatRandom(this.counter, randomWord());
  }

  private startMillisecond(ms: number): void {
    this.lastMs = ms;
    this.counter = counterSeed();
    this.prefix = formatTimestamp(ms);
  }
}

const sequence = new Uuid7Sequence();

export function uuidv7(): string {
  return sequence.next(Date.now());
}

function hex(byte: number): string {
  return HEX[byte] as string;
}

function formatTimestamp(ms: number): string {
  const msHigh = Math.floor(ms / TWO_32); // 16 bits
  const msLow = ms >>> 0; // 32 bits
  return (
    `${hex(msHigh >>> 8)}${hex(msHigh & 0xff)}${hex(msLow >>> 24)}${hex((msLow >>> 16) & 0xff)}-` +
    `${hex((msLow >>> 8) & 0xff)}${hex(msLow & 0xff)}-`
  );
}

/** The version, the counter, the variant and the random tail: "7ccc-vccc-cccc" + 8 random hex digits. */
function formatRandom(counter: number, tail: number): string {
  const counterHigh = Math.floor(counter / TWO_32); // 10 bits
  const counterLow = counter >>> 0; // 32 bits
  // counter bits 41..30 go to rand_a (after the version), 29..0 to rand_b (after the variant).
  const randA = (counterHigh << 2) | (counterLow >>> 30);
  const randB = counterLow & 0x3fffffff;
  return (
    `${hex(0x70 | (randA >>> 8))}${hex(randA & 0xff)}-` +
    `${hex(0x80 | (randB >>> 24))}${hex((randB >>> 16) & 0xff)}-` +
    `${hex((randB >>> 8) & 0xff)}${hex(randB & 0xff)}` +
    `${hex(tail >>> 24)}${hex((tail >>> 16) & 0xff)}${hex((tail >>> 8) & 0xff)}${hex(tail & 0xff)}`
  );
}
