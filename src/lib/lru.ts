/**
 * A bounded least-recently-used map: past `maxSize` entries, or past
 * `maxWeight` (bytes, say) of the weights given to `set`, the least recently
 * read or written entries go. An entry heavier than `maxWeight` alone is not
 * kept. A Map keeps insertion order, so re-inserting on access moves an entry
 * to the young end and the first key is the oldest.
 * The newest entry is kept aside too: reading it again is one comparison of
 * keys, with no hashing (a long key such as a token is hashed anew whenever it
 * is a new string) and nothing moved.
 * `maxSize` 0 keeps nothing.
 */
export class LruCache<K, V> {
  private readonly entries = new Map<K, { value: V; weight: number }>();
  private weight = 0;
  private newest: K | undefined;
  private newestValue: V | undefined;

  constructor(
    private readonly maxSize: number,
    private readonly maxWeight = Number.POSITIVE_INFINITY,
  ) {}

  get(key: K): V | undefined {
    if (key === this.newest) return this.newestValue;
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    this.entries.delete(key);
    this.entries.set(key, entry);
    this.newest = key;
    this.newestValue = entry.value;
    return entry.value;
  }

  set(key: K, value: V, weight = 0): void {
    this.delete(key);
    if (this.maxSize <= 0 || weight > this.maxWeight) return;
    while (this.entries.size >= this.maxSize || this.weight + weight > this.maxWeight) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.delete(oldest.value);
    }
    this.entries.set(key, { value, weight });
    this.weight += weight;
    this.newest = key;
    this.newestValue = value;
  }

  delete(key: K): void {
    const entry = this.entries.get(key);
    if (entry !== undefined) {
      this.entries.delete(key);
      this.weight -= entry.weight;
    }
    if (key === this.newest) {
      this.newest = undefined;
      this.newestValue = undefined;
    }
  }
}
