/**
 * A bounded least-recently-used map: past `maxSize` the least recently read
 * or written entry goes. A Map keeps insertion order, so re-inserting on
 * access moves an entry to the young end and the first key is the oldest.
 * The newest entry is kept aside too: reading it again is one comparison of
 * keys, with no hashing (a long key such as a token is hashed anew whenever it
 * is a new string) and nothing moved.
 * `maxSize` 0 keeps nothing.
 */
export class LruCache<K, V> {
  private readonly entries = new Map<K, V>();
  private newest: K | undefined;
  private newestValue: V | undefined;

  constructor(private readonly maxSize: number) {}

  get(key: K): V | undefined {
    if (key === this.newest) return this.newestValue;
    const value = this.entries.get(key);
    if (value === undefined) return undefined;
    this.entries.delete(key);
    this.entries.set(key, value);
    this.newest = key;
    this.newestValue = value;
    return value;
  }

  set(key: K, value: V): void {
    if (this.maxSize <= 0) return;
    this.entries.delete(key);
    if (this.entries.size >= this.maxSize) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(key, value);
    this.newest = key;
    this.newestValue = value;
  }

  delete(key: K): void {
    this.entries.delete(key);
    if (key === this.newest) {
      this.newest = undefined;
      this.newestValue = undefined;
    }
  }
}
