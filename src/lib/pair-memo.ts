/**
 * A value made once per pair of objects and kept while both are (a WeakMap
 * of WeakMaps): for what is costly to make per use but follows from two
 * shared objects, such as one header block joined from two, or a runtime's
 * headers object for a block.
 */
export class PairMemo<First extends object, Second extends object, Value> {
  private readonly byFirst = new WeakMap<First, WeakMap<Second, Value>>();

  constructor(private readonly make: (first: First, second: Second) => Value) {}

  /** The value for `first` and `second`, made on the first ask. */
  get(first: First, second: Second): Value {
    let bySecond = this.byFirst.get(first);
    if (bySecond === undefined) {
      bySecond = new WeakMap();
      this.byFirst.set(first, bySecond);
    }
    let value = bySecond.get(second);
    if (value === undefined) {
      value = this.make(first, second);
      bySecond.set(second, value);
    }
    return value;
  }
}
