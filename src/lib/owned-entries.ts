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

const byCount = <V>(owner: Owner<V>) => owner.entries.size;
const byWeight = <V>(owner: Owner<V>) => owner.weight;

/**
 * Entries grouped by owner (a tenant), bounded in count and weight for all
 * owners together. Past a bound, an owner holding more than an equal share
 * (by that bound) loses its oldest entry: an owner writing many entries pushes
 * out its own, never those of an owner holding less than its share, where one
 * shared oldest-first order would let one tenant flush every other tenant's
 * entries. An owner is freed with its last entry.
 */
export class OwnedEntries<V> {
  private readonly owners = new Map<string, Owner<V>>();
  private entries = 0;
  private weight = 0;
  /** Who paid for the last write past a bound: likely to pay for the next one too. */
  private lastPayer: Owner<V> | undefined;

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
          ? this.payer(held, byCount, this.entries)
          : this.payer(held, byWeight, this.weight);
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
    this.lastPayer = undefined;
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
   * An owner holding more than an equal share by `measure` (whose sum over
   * owners is `total`) pays, never one holding less. Which one, without
   * scanning every owner on each write past a bound: the last payer while it
   * still holds at least as much as the writer (one owner's flood, whoever
   * writes), else the writer when it is over its share, unless a scan finds an
   * owner holding more (once per new payer); else the first owner over its
   * share in the order owners arrived. When every owner holds exactly its
   * share (one entry each, say), the owner that has held entries longest, so a
   * writer's only (new) entry is not the one pushed out.
   */
  private payer(writer: Owner<V>, measure: (owner: Owner<V>) => number, total: number): Owner<V> {
    const owners = this.owners.size;
    const overShare = (owner: Owner<V>) => measure(owner) * owners > total;
    const last =
      this.lastPayer !== undefined && this.owners.get(this.lastPayer.name) === this.lastPayer
        ? this.lastPayer
        : undefined;
    if (last !== undefined && measure(last) >= measure(writer) && overShare(last)) return last;
    let payer: Owner<V> | undefined;
    if (overShare(writer)) {
      payer = writer;
      for (const owner of this.owners.values()) if (measure(owner) > measure(payer)) payer = owner;
    } else if (measure === byCount && total === owners) {
      // Every owner holds at least one entry: as many entries as owners is one each.
      payer = this.owners.values().next().value;
    } else {
      for (const owner of this.owners.values()) {
        if (overShare(owner)) {
          payer = owner;
          break;
        }
      }
      payer ??= this.owners.values().next().value;
    }
    this.lastPayer = payer ?? writer;
    return this.lastPayer;
  }
}
