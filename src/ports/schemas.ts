/**
 * The numbers of a record's `data` that JSON.parse rounded, by where they
 * sit: container (object or array) → member name or index → the text as sent.
 */
export type ExactNumbers = WeakMap<object, ReadonlyMap<string | number, string>>;

export type Validation = { ok: true } | { ok: false; reason: string };

/** Validates a record's `data` against the JSON Schema registered for its `type`. */
export interface SchemaValidator {
  /**
   * Unknown type → `unknown type "x"`; otherwise reasons read like `data/amount must be >= 0`.
   * `exactNumbers`: the texts of numbers JSON.parse rounded, so that limits hold for the numbers as sent.
   */
  validate(type: string, data: unknown, exactNumbers?: ExactNumbers): Validation;
}
