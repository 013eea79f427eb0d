/** Strings per chunk before it is split in two: adding or removing a string moves at most this many. */
const MAX_CHUNK = 512;

/**
 * Orders strings by code point, as their UTF-8 bytes sort (Redis's order for
 * members of equal score). `<` compares UTF-16 code units, which puts an
 * astral character (its surrogates, U+D800–DFFF) before U+E000–FFFF: two
 * stores listing a page of the same members would disagree on it. At the
 * first unit that differs, surrogates are ranked above U+E000–FFFF.
 */
export function compareCodePoints(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let index = 0; index < length; index++) {
    const unitA = a.charCodeAt(index);
    const unitB = b.charCodeAt(index);
    if (unitA !== unitB) return codePointRank(unitA) - codePointRank(unitB);
  }
  return a.length - b.length;
}

/** A code unit's place in code point order: U+E000–FFFF moved below the surrogates. */
function codePointRank(unit: number): number {
  if (unit < 0xd800) return unit;
  return unit >= 0xe000 ? unit - 0x800 : unit + 0x2000;
}

/**
 * A set of strings kept in code point order (`compareCodePoints`), as
 * sorted chunks: adding or removing one is two binary searches and a move
 * within a chunk, and the first `limit` are read in order by walking the
 * chunks, a cost bounded by `limit`, never by the size (a sort per read of a
 * set of 100,000 took 150 ms).
 */
export class SortedStrings {
  /** Non-empty, each sorted, each one's last before the next one's first. */
  private readonly chunks: string[][] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds `value`; false when it was there already. */
  add(value: string): boolean {
    const at = this.chunkFor(value);
    const chunk = this.chunks[at];
    if (!chunk) {
      this.chunks.push([value]);
      this.count++;
      return true;
    }
    const index = positionIn(chunk, value);
    if (chunk[index] === value) return false;
    chunk.splice(index, 0, value);
    this.count++;
    if (chunk.length > MAX_CHUNK) this.chunks.splice(at + 1, 0, chunk.splice(MAX_CHUNK / 2));
    return true;
  }

  /** Removes `value`; false when it was not there. */
  delete(value: string): boolean {
    const at = this.chunkFor(value);
    const chunk = this.chunks[at];
    if (!chunk) return false;
    const index = positionIn(chunk, value);
    if (chunk[index] !== value) return false;
    chunk.splice(index, 1);
    this.count--;
    if (chunk.length === 0) this.chunks.splice(at, 1);
    return true;
  }

  /** The first `limit` strings, in order. */
  first(limit: number): string[] {
    const first: string[] = [];
    for (const chunk of this.chunks) {
      for (const value of chunk) {
        if (first.length >= limit) return first;
        first.push(value);
      }
    }
    return first;
  }

  /** The chunk `value` is in or belongs in: the first whose last is not before it, else the last (undefined: none). */
  private chunkFor(value: string): number {
    let low = 0;
    let high = this.chunks.length - 1;
    while (low < high) {
      const middle = (low + high) >>> 1;
      const chunk = this.chunks[middle] as string[];
      if (compareCodePoints(chunk[chunk.length - 1] as string, value) < 0) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}

/** The index of the first string in `chunk` not before `value`. */
function positionIn(chunk: readonly string[], value: string): number {
  let low = 0;
  let high = chunk.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (compareCodePoints(chunk[middle] as string, value) < 0) low = middle + 1;
    else high = middle;
  }
  return low;
}
