import Ajv2020, { type ValidateFunction } from "ajv/dist/2020.js";
import { compareDecimal, isMultipleOf, parseDecimal } from "../../lib/decimal.ts";
import type { Logger } from "../../log/logger.ts";
import type { ExactNumbers, SchemaValidator } from "../../ports/schemas.ts";
import { RefreshedDocument } from "../remote/document.ts";
import { addSchemaFormats } from "./formats.ts";
import { loadSchemaDocuments, type S3ObjectClient } from "./sources.ts";

export interface SchemaRegistry extends SchemaValidator {
  types(): string[];
  /** Initial load; rejects if it fails (the gateway then refuses to start). Then refreshes every refreshMs in the background. */
  start(): Promise<void>;
  /** Stops the refresh timer. */
  stop(): void;
}

export interface SchemaRegistryOptions {
  /** A folder path, an http(s):// URL, or s3://bucket/key. */
  source: string;
  refreshMs: number;
  log: Logger;
  onRefreshFailure?: () => void;
  onLoaded?: (typeCount: number) => void;
  /** Needed for an s3:// source. */
  s3Client?: S3ObjectClient;
}

/** What is in use: swapped as a whole, never edited. */
interface CompiledSet {
  validators: Map<string, ValidateFunction>;
  /** sha256 of the source text(s): an identical set is not compiled again. */
  hash: string;
}

const MAX_REASONS = 3;

/**
 * JSON Schemas per event type, compiled with ajv. A refresh that fails (source
 * unreachable, bad JSON, a schema that does not compile) keeps the last good
 * set; a new set replaces it only once every schema in it compiled.
 */
export function createSchemaRegistry(options: SchemaRegistryOptions): SchemaRegistry {
  const { source, log } = options;
  const document = new RefreshedDocument<CompiledSet>({
    name: "schema",
    source,
    refreshMs: options.refreshMs,
    log,
    onRefreshFailure: options.onRefreshFailure,
    load: async (current) => {
      const loaded = await loadSchemaDocuments(source, { etag: current?.etag, s3Client: options.s3Client });
      if (loaded === "not-modified") return loaded;
      if (current && loaded.hash === current.value.hash) return { value: current.value, etag: loaded.etag };
      const validators = compileAll(loaded.schemas);
      options.onLoaded?.(validators.size);
      log.info({ source, types: [...validators.keys()] }, "schemas loaded");
      return { value: { validators, hash: loaded.hash }, etag: loaded.etag };
    },
  });

  return {
    validate(type, data, exactNumbers) {
      const validate = document.value?.validators.get(type);
      if (!validate) return { ok: false, reason: `unknown type "${type}"` };
      // Read by the numeric keywords during this synchronous call only.
      numbersAsSent = exactNumbers;
      try {
        return validate(data) ? { ok: true } : { ok: false, reason: describeErrors(validate) };
      } finally {
        numbersAsSent = undefined;
      }
    },
    types: () => [...(document.value?.validators.keys() ?? [])],
    start: () => document.start(),
    stop: () => document.stop(),
  };
}

/** The exact texts of the numbers of the `data` being validated, when some are not exactly their double. */
let numbersAsSent: ExactNumbers | undefined;

type NumericKeyword = "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" | "multipleOf";

/**
 * The numeric keywords, each as a keyword of ours (`exactMaximum`…) that
 * holds for the number as sent: a number JSON.parse rounded is compared by
 * its text, exactly; any other number by its double (the order of doubles is
 * that of the numbers as written; `multipleOf` is still decided in decimals,
 * see `isMultipleOfAsWritten`, as a double quotient is not). The schema's
 * own limit is a double; its shortest text (`String(limit)`) is the decimal the
 * schema's author wrote for any limit a double can hold exactly enough.
 */
const EXACT_KEYWORDS: Record<
  NumericKeyword,
  { name: string; holds(value: string, limit: number): boolean; operator: string }
> = {
  minimum: {
    name: "exactMinimum",
    operator: ">=",
    holds: (value, limit) => compareToLimit(value, limit) >= 0,
  },
  maximum: {
    name: "exactMaximum",
    operator: "<=",
    holds: (value, limit) => compareToLimit(value, limit) <= 0,
  },
  exclusiveMinimum: {
    name: "exactExclusiveMinimum",
    operator: ">",
    holds: (value, limit) => compareToLimit(value, limit) > 0,
  },
  exclusiveMaximum: {
    name: "exactExclusiveMaximum",
    operator: "<",
    holds: (value, limit) => compareToLimit(value, limit) < 0,
  },
  multipleOf: {
    name: "exactMultipleOf",
    operator: "multiple of",
    holds: (value, limit) => isMultipleOf(parseDecimal(value), parseDecimal(String(limit))),
  },
};

function compareToLimit(value: string, limit: number): number {
  return compareDecimal(parseDecimal(value), parseDecimal(String(limit)));
}

/** The check for the numbers that are exactly their double: ajv's comparisons, an exact `multipleOf`. */
function holdsAsDouble(keyword: NumericKeyword, value: number, limit: number): boolean {
  switch (keyword) {
    case "minimum":
      return value >= limit;
    case "maximum":
      return value <= limit;
    case "exclusiveMinimum":
      return value > limit;
    case "exclusiveMaximum":
      return value < limit;
    case "multipleOf":
      return isMultipleOfAsWritten(value, limit);
  }
}

/**
 * `multipleOf` for a number that is exactly its double, decided in decimals:
 * the shortest text of a double (`String(x)`) is the number as written, so
 * 0.07 is a multiple of 0.01 and 1e21 is not one of 3, where ajv's double
 * quotient (7.000000000000001, 333333333333333300000) says the opposite.
 * Safe integers divide exactly as doubles, so they skip the decimals.
 */
function isMultipleOfAsWritten(value: number, limit: number): boolean {
  if (Number.isSafeInteger(value) && Number.isSafeInteger(limit) && limit > 0) return value % limit === 0;
  return isMultipleOf(parseDecimal(String(value)), parseDecimal(String(limit)));
}

function addExactKeywords(ajv: Ajv2020): void {
  for (const keyword of Object.keys(EXACT_KEYWORDS) as NumericKeyword[]) {
    const { name, holds, operator } = EXACT_KEYWORDS[keyword];
    const check = (
      limit: number,
      value: number,
      _schema: unknown,
      context?: { parentData?: unknown; parentDataProperty?: string | number },
    ): boolean => {
      const parent = context?.parentData;
      const text =
        numbersAsSent !== undefined && parent !== null && typeof parent === "object"
          ? numbersAsSent.get(parent)?.get(context?.parentDataProperty as string | number)
          : undefined;
      if (text === undefined ? holdsAsDouble(keyword, value, limit) : holds(text, limit)) return true;
      check.errors = [{ keyword, message: `must be ${operator} ${limit}`, params: { limit } }];
      return false;
    };
    check.errors = [] as Array<{ keyword: string; message: string; params: Record<string, unknown> }>;
    ajv.addKeyword({ keyword: name, type: "number", schemaType: "number", errors: true, validate: check });
  }
}

/** Keywords whose value is one subschema, a list of them, or a map of them (2020-12 and draft-07 spellings). */
const SUBSCHEMA = new Set([
  "not",
  "if",
  "then",
  "else",
  "items",
  "additionalItems",
  "additionalProperties",
  "unevaluatedItems",
  "unevaluatedProperties",
  "contains",
  "propertyNames",
]);
const SUBSCHEMA_LISTS = new Set(["allOf", "anyOf", "oneOf", "prefixItems", "items"]);
const SUBSCHEMA_MAPS = new Set([
  "properties",
  "patternProperties",
  "$defs",
  "definitions",
  "dependentSchemas",
]);

/** A copy of `schema` with its numeric keywords (where they are keywords, not data) replaced by ours. */
export function withExactNumericKeywords(schema: unknown): unknown {
  if (schema === null || typeof schema !== "object" || Array.isArray(schema)) return schema;
  const copy: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key in EXACT_KEYWORDS && typeof value === "number")
      copy[EXACT_KEYWORDS[key as NumericKeyword].name] = value;
    else if (SUBSCHEMA_LISTS.has(key) && Array.isArray(value))
      copy[key] = value.map(withExactNumericKeywords);
    else if (SUBSCHEMA.has(key)) copy[key] = withExactNumericKeywords(value);
    else if (SUBSCHEMA_MAPS.has(key) && value !== null && typeof value === "object") {
      copy[key] = Object.fromEntries(
        Object.entries(value).map(([name, subschema]) => [name, withExactNumericKeywords(subschema)]),
      );
    } else copy[key] = value;
  }
  return copy;
}

function compileAll(schemas: Record<string, object>): Map<string, ValidateFunction> {
  // A fresh instance per set: schemas of a replaced set (and their $ids) do not linger.
  // strict: false so vendor keywords in user schemas load; a schema that does not compile still fails the set.
  const ajv = new Ajv2020({ allErrors: false, strict: false });
  addSchemaFormats(ajv);
  addExactKeywords(ajv);
  const validators = new Map<string, ValidateFunction>();
  for (const [type, schema] of Object.entries(schemas)) {
    try {
      validators.set(type, ajv.compile(withExactNumericKeywords(schema) as object));
    } catch (error) {
      throw new Error(`schema for "${type}" does not compile: ${(error as Error).message}`);
    }
  }
  return validators;
}

function describeErrors(validate: ValidateFunction): string {
  return (validate.errors ?? [])
    .slice(0, MAX_REASONS)
    .map((error) => `data${error.instancePath} ${error.message ?? "is invalid"}`)
    .join("; ");
}
