export type Validation = { ok: true } | { ok: false; reason: string };

/** Validates a record's `data` against the JSON Schema registered for its `type`. */
export interface SchemaValidator {
  /** Unknown type → `unknown type "x"`; otherwise reasons read like `data/amount must be >= 0`. */
  validate(type: string, data: unknown): Validation;
}
