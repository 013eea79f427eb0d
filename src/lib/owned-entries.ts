export interface OwnedBounds {
  /** Entries of every owner together. */
  maxEntries: number;
  /** Weight (bytes, say) of every owner's entries together. */
  maxWeight: number;
}

class Owner<V> {
  /** Oldest first: a Map keeps insertion order, and a `set` re-inserts at the young end. */
  readonly entries = new Map<string, { value: V; weight: number }>();
  weight = 0;

  constructor(readonly name: string) {}
}

/**
 * Entries grouped by owner (a tenant), bounded in count and weight for all
 * owners together. Past a bound, the owner holding the most (by that bound)
 * loses its oldest entry: an owner writing many entries pushes out its own,
 * never those of an owner holding less, where one shared oldest-first order
 * would let one tenant flush every other tenant's entries. An owner is freed
 * with its last entry.
 */
export class OwnedEntries<V> {
  private readonly owners = new Map<string, Owner<V>>();
  private entries = 0;
  private weight = 0;

  constructor(
    private readonly bounds: OwnedBounds,
    /** Called with each entry a bound pushes out (not those deleted or replaced). */
    private readonly onEvict: (value: V) => void = () => {},
  ) {}

  get(owner: string, key: string): V | undefined {
    return this.owners.get(owner)?.entries.get(key)?.value;
  }

  /** Sets the entry as its owner's newest, then evicts past the bounds. */
  set(owner: string, key: string, value: V, weight = 0): void {
    this.delete(owner, key);
    let held = this.owners.get(owner);
    if (!held) {
      held = new Owner<V>(owner);
      this.owners.set(owner, held);
    }
    held.entries.set(key, { value, weight });
    held.weight += weight;
    this.entries++;
    this.weight += weight;
    while (this.entries > this.bounds.maxEntries || this.weight > this.bounds.maxWeight) {
      const victim =
        this.entries > this.bounds.maxEntries
          ? this.largest(held, (candidate) => candidate.entries.size, this.entries)
          : this.largest(held, (candidate) => candidate.weight, this.weight);
      const oldest = victim.entries.entries().next();
      if (oldest.done) break;
      const [oldestKey, entry] = oldest.value;
      this.remove(victim, oldestKey);
      this.onEvict(entry.value);
    }
  }

  delete(owner: string, key: string): void {
    const held = this.owners.get(owner);
    if (held?.entries.has(key)) this.remove(held, key);
  }

  clear(): void {
    this.owners.clear();
    this.entries = 0;
    this.weight = 0;
  }

  /** Entries, their weight and their owners held now. */
  get size(): { entries: number; weight: number; owners: number } {
    return { entries: this.entries, weight: this.weight, owners: this.owners.size };
  }

  private remove(held: Owner<V>, key: string): void {
    const entry = held.entries.get(key);
    if (!entry) return;
    held.entries.delete(key);
    held.weight -= entry.weight;
    this.entries--;
    this.weight -= entry.weight;
    if (held.entries.size === 0) this.owners.delete(held.name);
  }

  /**
   * The owner holding the most by `measure` (whose sum over owners is
   * `total`): the writer when it holds more than the average, the common case
   * under one owner's flood, which needs no scan; otherwise the largest found
   * by a scan, ties going to the owner that has held entries longest, so that
   * owners holding one entry each lose them oldest first and a writer's only
   * (new) entry is not the one pushed out.
   */
  private largest(writer: Owner<V>, measure: (owner: Owner<V>) => number, total: number): Owner<V> {
    if (measure(writer) * this.owners.size > total) return writer;
    let largest = writer;
    let most = Number.NEGATIVE_INFINITY;
    for (const owner of this.owners.values()) {
      const held = measure(owner);
      if (held > most) {
        largest = owner;
        most = held;
      }
    }
    return largest;
  }
}
