import { createRequire } from "node:module";
import Ajv from "ajv";
import Ajv2019 from "ajv/dist/2019.js";
import Ajv2020, { type ValidateFunction } from "ajv/dist/2020.js";
import type AjvCore from "ajv/dist/core.js";
import type { Options } from "ajv/dist/core.js";
import {
  compareDecimal,
  type Decimal,
  isExactDouble,
  isMultipleOf,
  parseDecimal,
} from "../../lib/decimal.ts";
import type { Logger } from "../../log/logger.ts";
import type { ExactNumbers, SchemaValidator } from "../../ports/schemas.ts";
import { RefreshedDocument } from "../remote/document.ts";
import { checkPatternsRunInTime } from "./backtracking.ts";
import { addSchemaFormats } from "./formats.ts";
import { checkNoEndlessRecursion } from "./loops.ts";
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
  /**
   * The last set that did not compile. While the source still holds it, each
   * refresh fails with its error again, compiling nothing: compiling every
   * schema of a large bundle at every refresh only to fail the same way cost
   * a core for as long as the source stayed broken. It still fails (counted,
   * GatewayRefreshFailing keeps firing): the set in use is not the source's.
   * With an ETag the read is conditional on the refused one, so it is not
   * downloaded again either.
   */
  let refused: { hash: string; etag: string | undefined; error: unknown } | undefined;
  const document = new RefreshedDocument<CompiledSet>({
    name: "schema",
    source,
    refreshMs: options.refreshMs,
    log,
    onRefreshFailure: options.onRefreshFailure,
    load: async (current) => {
      const last = refused; // refreshes never overlap: no other load changes it meanwhile
      const loaded = await loadSchemaDocuments(source, {
        etag: last?.etag ?? current?.etag,
        s3Client: options.s3Client,
      });
      if (loaded === "not-modified") {
        // A 304 to the refused set's ETag: the source still holds that set.
        if (last?.etag !== undefined) throw last.error;
        return loaded;
      }
      if (last && loaded.hash === last.hash) {
        last.etag = loaded.etag;
        throw last.error;
      }
      refused = undefined;
      if (current && loaded.hash === current.value.hash) return { value: current.value, etag: loaded.etag };
      let validators: Map<string, ValidateFunction>;
      try {
        validators = await compileAll(loaded.schemas, loaded.exactNumbers, (type, warning) =>
          log.warn({ source, type, warning }, "schema warning"),
        );
      } catch (error) {
        refused = { hash: loaded.hash, etag: loaded.etag, error };
        throw error;
      }
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
 * holds for the numbers as written, the data's and the schema's: a number
 * JSON.parse rounded is compared by its text, exactly; a number that is
 * exactly its double by that double, whose shortest text (`String(x)`) is the
 * number as written. Comparisons of two such doubles are ajv's; `multipleOf`
 * is decided in decimals (see `holds`), as a double quotient is not exact.
 * The keyword's value in the compiled copy is the limit's text: the schema's
 * own where JSON.parse rounded it (`9007199254740993`), else `String(limit)`.
 */
const EXACT_KEYWORDS: Record<NumericKeyword, { name: string; operator: string }> = {
  minimum: { name: "exactMinimum", operator: ">=" },
  maximum: { name: "exactMaximum", operator: "<=" },
  exclusiveMinimum: { name: "exactExclusiveMinimum", operator: ">" },
  exclusiveMaximum: { name: "exactExclusiveMaximum", operator: "<" },
  multipleOf: { name: "exactMultipleOf", operator: "multiple of" },
};

/** A schema's limit, prepared once when its schema compiles. */
interface Limit {
  decimal: Decimal;
  double: number;
  /** The limit is exactly its double (see `isExactDouble`): doubles compare with it as the numbers written. */
  exact: boolean;
  /** An exact positive safe integer: a safe integer value divides by it as a double, exactly. */
  safeInteger: boolean;
}

function limitOf(text: string): Limit {
  const double = Number(text);
  const exact = isExactDouble(text);
  return {
    decimal: parseDecimal(text),
    double,
    exact,
    safeInteger: exact && Number.isSafeInteger(double) && double > 0,
  };
}

/**
 * Whether `value` meets the limit; `sent` is its text when JSON.parse rounded
 * it. Doubles compare when both sides are exactly their double, decimals
 * otherwise; `multipleOf` is always decided in decimals (0.07 is a multiple of
 * 0.01 though 0.07 / 0.01 is 7.000000000000001, 1e21 is none of 3 though
 * 1e21 / 3 is an integral double), but for safe integers, which divide exactly.
 */
function holds(keyword: NumericKeyword, value: number, sent: string | undefined, limit: Limit): boolean {
  if (keyword === "multipleOf") {
    if (sent === undefined && limit.safeInteger && Number.isSafeInteger(value))
      return value % limit.double === 0;
    return isMultipleOf(parseDecimal(sent ?? String(value)), limit.decimal);
  }
  // The difference of two finite doubles rounds but keeps its sign, and is 0 only for equal ones.
  const order =
    sent === undefined && limit.exact
      ? Math.sign(value - limit.double)
      : compareDecimal(parseDecimal(sent ?? String(value)), limit.decimal);
  switch (keyword) {
    case "minimum":
      return order >= 0;
    case "maximum":
      return order <= 0;
    case "exclusiveMinimum":
      return order > 0;
    case "exclusiveMaximum":
      return order < 0;
  }
}

type DataContext = { parentData?: unknown; parentDataProperty?: string | number };
type ErrorObject = { keyword: string; message: string; params: Record<string, unknown> };

/**
 * The keywords of ours are `validate` keywords, one function for every place
 * that is given the keyword's value, not `compile` ones, a function per place:
 * ajv's code generation grew with the square of such functions (8000 limits
 * in an `anyOf` took 12 s to compile in one go, 1 s this way).
 */
function addExactKeywords(ajv: AjvCore): void {
  // One entry per limit text of this instance's schemas, prepared at its first use; the set owns it.
  const limits = new Map<string, Limit>();
  for (const keyword of Object.keys(EXACT_KEYWORDS) as NumericKeyword[]) {
    const { name, operator } = EXACT_KEYWORDS[keyword];
    const check = (text: string, value: number, _schema?: unknown, context?: DataContext): boolean => {
      let limit = limits.get(text);
      if (limit === undefined) {
        limit = limitOf(text);
        limits.set(text, limit);
      }
      if (holds(keyword, value, sentText(context), limit)) return true;
      // A new object each time: ajv writes the instance path into it.
      check.errors = [{ keyword, message: `must be ${operator} ${text}`, params: { limit: limit.double } }];
      return false;
    };
    check.errors = [] as ErrorObject[];
    ajv.addKeyword({ keyword: name, type: "number", schemaType: "string", errors: true, validate: check });
  }
  // Beside `type: "integer"`: ajv judged the double, which is an integer for `1.0000000000000000001`.
  const integer = (_on: boolean, _value: number, _schema?: unknown, context?: DataContext): boolean => {
    const sent = sentText(context);
    if (sent === undefined || isIntegral(parseDecimal(sent))) return true;
    integer.errors = [{ keyword: "type", message: "must be integer", params: { type: "integer" } }];
    return false;
  };
  integer.errors = [] as ErrorObject[];
  ajv.addKeyword({
    keyword: "exactInteger",
    type: "number",
    schemaType: "boolean",
    errors: true,
    validate: integer,
  });
}

/** The text of the number being validated, when JSON.parse rounded it (else its double is the number sent). */
function sentText(context: DataContext | undefined): string | undefined {
  const parent = context?.parentData;
  return numbersAsSent !== undefined && parent !== null && typeof parent === "object"
    ? numbersAsSent.get(parent)?.get(context?.parentDataProperty as string | number)
    : undefined;
}

function isIntegral(decimal: Decimal): boolean {
  return decimal.digits === "" || decimal.exponent >= decimal.digits.length;
}

/** A `type` that holds only integers among numbers: `integer`, or a list naming it and not `number`. */
function integersOnly(type: unknown): boolean {
  return type === "integer" || (Array.isArray(type) && type.includes("integer") && !type.includes("number"));
}

/**
 * A JSON value as text in which equal values are equal strings: numbers by
 * their decimal value (as sent when `textOf` has their text, else their
 * double: `1.0`, `1` and `1e0` alike, `-0` as `0`), members by name order.
 * `textOf(container, member)` is a number's text, when JSON.parse rounded it.
 */
function canonical(
  value: unknown,
  textOf: (container: object, member: string | number) => string | undefined,
  container?: object,
  member?: string | number,
): string {
  if (typeof value === "number") {
    const sent = container === undefined ? undefined : textOf(container, member as string | number);
    const { negative, digits, exponent } = parseDecimal(sent ?? String(value));
    return digits === "" ? "0" : `${negative ? "-" : ""}.${digits}e${exponent}`;
  }
  if (Array.isArray(value))
    return `[${value.map((item, index) => canonical(item, textOf, value, index)).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const object = value as Record<string, unknown>;
    const members = Object.keys(object)
      .sort()
      .map((name) => `${JSON.stringify(name)}:${canonical(object[name], textOf, object, name)}`);
    return `{${members.join(",")}}`;
  }
  return JSON.stringify(value);
}

/** The text of a number of the data being validated, when JSON.parse rounded it. */
const dataNumberText = (container: object, member: string | number): string | undefined =>
  numbersAsSent?.get(container)?.get(member);

/** `canonical` of the value a keyword is checking, found in the data by its parent. */
function canonicalData(value: unknown, context?: DataContext): string {
  const parent = context?.parentData;
  return parent !== null && typeof parent === "object"
    ? canonical(value, dataNumberText, parent, context?.parentDataProperty)
    : canonical(value, dataNumberText);
}

/**
 * The allowed values of a `const` (one) or an `enum`, as `canonical` texts,
 * and whether the schema wrote a number JSON.parse rounded.
 */
interface AllowedValues {
  values: string[];
  rounded: boolean;
}

/**
 * A `const` (`values` of one, sitting at `member` of `container`) or an
 * `enum` (`values` is the container) as AllowedValues; `numberText` has the
 * texts of the schema's numbers that JSON.parse rounded.
 */
function allowedValues(
  values: unknown[],
  numberText: (container: object, member: string | number) => string | undefined,
  container: object,
  member?: string,
): AllowedValues {
  const asWritten = values.map((value, index) => canonical(value, numberText, container, member ?? index));
  return {
    values: asWritten,
    rounded: asWritten.some((text, index) => text !== canonical(values[index], NO_TEXT)),
  };
}

const NO_TEXT = (): undefined => undefined;

/**
 * `const`, `enum` and `uniqueItems` for the numbers as sent. ajv compares
 * JSON.parse's doubles: `9007199254740992` passed a `const` of
 * `9007199254740993`, and `[9007199254740992, 9007199254740993]` had a
 * duplicate, though the bytes forwarded say otherwise. `const` and `enum`
 * stay ajv's, which never refuses a value that is equal as sent (equal
 * numbers round to one double), and ours refuses what only the rounding made
 * equal; it looks only when a number was rounded, the data's or the schema's.
 * `uniqueItems` replaces ajv's, whose refusals may be wrong too.
 */
function addExactEqualityKeywords(ajv: AjvCore): void {
  const allowedKeyword = (name: string, keyword: "const" | "enum", message: string) => {
    // Each place's values as a set, made at its first use; kept as long as its schema.
    const sets = new WeakMap<AllowedValues, Set<string>>();
    const check = (
      allowed: AllowedValues,
      value: unknown,
      _schema?: unknown,
      context?: DataContext,
    ): boolean => {
      if (numbersAsSent === undefined && !allowed.rounded) return true;
      let values = sets.get(allowed);
      if (values === undefined) {
        values = new Set(allowed.values);
        sets.set(allowed, values);
      }
      if (values.has(canonicalData(value, context))) return true;
      check.errors = [{ keyword, message, params: {} }];
      return false;
    };
    check.errors = [] as ErrorObject[];
    ajv.addKeyword({ keyword: name, schemaType: "object", errors: true, validate: check });
  };
  allowedKeyword("exactConst", "const", "must be equal to constant");
  allowedKeyword("exactEnum", "enum", "must be equal to one of the allowed values");
  const unique = (isUnique: boolean, items: unknown[]): boolean => {
    if (!isUnique) return true;
    const seen = new Map<string, number>();
    for (let index = 0; index < items.length; index++) {
      const text = canonical(items[index], dataNumberText, items, index);
      const first = seen.get(text);
      if (first !== undefined) {
        unique.errors = [
          {
            keyword: "uniqueItems",
            message: `must NOT have duplicate items (items ## ${first} and ${index} are identical)`,
            params: { i: index, j: first },
          },
        ];
        return false;
      }
      seen.set(text, index);
    }
    return true;
  };
  unique.errors = [] as ErrorObject[];
  ajv.addKeyword({
    keyword: "exactUniqueItems",
    type: "array",
    schemaType: "boolean",
    errors: true,
    validate: unique,
  });
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
  // draft-07: a subschema or a list of names, which is copied as it is
  "dependencies",
]);

/**
 * A copy of `schema` with its numeric keywords (where they are keywords, not
 * data) replaced by ours, each holding its limit's text: the schema's own text
 * when `schemaNumbers` has it (JSON.parse rounded it), else `String(limit)`;
 * `const` and `enum` joined by ours (their values as written), and
 * `uniqueItems` replaced by ours (see `addExactEqualityKeywords`).
 */
export function withExactNumericKeywords(schema: unknown, schemaNumbers?: ExactNumbers): unknown {
  if (schema === null || typeof schema !== "object" || Array.isArray(schema)) return schema;
  const copied = (subschema: unknown) => withExactNumericKeywords(subschema, schemaNumbers);
  const texts = schemaNumbers?.get(schema);
  const copy: Record<string, unknown> = {};
  const numberText = (container: object, member: string | number) =>
    schemaNumbers?.get(container)?.get(member);
  for (const [key, value] of Object.entries(schema)) {
    if (key in EXACT_KEYWORDS && typeof value === "number")
      copy[EXACT_KEYWORDS[key as NumericKeyword].name] = texts?.get(key) ?? String(value);
    else if (key === "const") {
      copy.const = value;
      copy.exactConst = allowedValues([value], numberText, schema, key);
    } else if (key === "enum" && Array.isArray(value)) {
      copy.enum = value;
      copy.exactEnum = allowedValues(value, numberText, value);
    } else if (key === "uniqueItems" && typeof value === "boolean") copy.exactUniqueItems = value;
    else if (key === "type" && integersOnly(value)) {
      copy.type = value;
      copy.exactInteger = true;
    } else if (SUBSCHEMA_LISTS.has(key) && Array.isArray(value)) copy[key] = value.map(copied);
    else if (SUBSCHEMA.has(key)) copy[key] = copied(value);
    else if (SUBSCHEMA_MAPS.has(key) && value !== null && typeof value === "object") {
      copy[key] = Object.fromEntries(
        Object.entries(value).map(([name, subschema]) => [name, copied(subschema)]),
      );
    } else copy[key] = value;
  }
  return copy;
}

/**
 * The drafts a schema may name in `$schema`, each validated by its own ajv
 * (2020-12 changed `items` and `$ref`, so one instance cannot hold them all):
 * a schema written for draft-07 keeps draft-07's meaning. Without `$schema`,
 * 2020-12. ajv has no draft-04 (`exclusiveMaximum: true`).
 */
type Dialect = "2020-12" | "2019-09" | "draft-07";
const DIALECTS: Record<string, Dialect> = {
  "https://json-schema.org/draft/2020-12/schema": "2020-12",
  "https://json-schema.org/draft/2019-09/schema": "2019-09",
  "http://json-schema.org/draft-07/schema": "draft-07",
  "http://json-schema.org/draft-06/schema": "draft-07",
};

function dialectOf(schema: object): Dialect {
  if (!("$schema" in schema)) return "2020-12";
  const declared = schema.$schema;
  // The meta-schemas' ids, with or without the empty fragment ("…/draft-07/schema#").
  const dialect = typeof declared === "string" ? DIALECTS[declared.replace(/#$/, "")] : undefined;
  if (dialect === undefined) {
    throw new Error(
      `"$schema" ${JSON.stringify(declared)} is not a draft the registry knows (${Object.keys(DIALECTS).join(", ")})`,
    );
  }
  return dialect;
}

// Not an import: `bun build` drops its `with { type: "json" }`, without which Node refuses a JSON module.
const draft6MetaSchema = createRequire(import.meta.url)("ajv/dist/refs/json-schema-draft-06.json");

/**
 * An ajv for one draft. `validateSchema`: whether it checks each schema
 * added against the draft's meta-schema; a set's instances do not, as
 * `checkAgainstMetaSchema` did.
 */
function newAjv(dialect: Dialect, logger: Options["logger"], validateSchema: boolean): AjvCore {
  // strict: false so vendor keywords in user schemas load; a schema that does not compile still fails the set.
  // ownProperties: a property is the record's own, not one every object inherits. Without it `required:
  // ["constructor"]` passed `{}`, and an optional `toString` property refused every record lacking it.
  const options: Options = { allErrors: false, strict: false, ownProperties: true, logger, validateSchema };
  let ajv: AjvCore;
  if (dialect === "2020-12") ajv = new Ajv2020(options);
  else if (dialect === "2019-09") ajv = new Ajv2019(options);
  else {
    ajv = new Ajv(options);
    ajv.addMetaSchema(draft6MetaSchema);
  }
  // ajv keeps schemas by key (the type) in plain objects, where "constructor", "toString" or "__proto__" are
  // taken already ("schema with key or id "toString" already exists"): one such type refused the whole set.
  Object.setPrototypeOf(ajv.schemas, null);
  Object.setPrototypeOf(ajv.refs, null);
  addSchemaFormats(ajv);
  addExactKeywords(ajv);
  addExactEqualityKeywords(ajv);
  return ajv;
}

/**
 * One long-lived ajv per draft that only checks schemas against the draft's
 * meta-schema, never holding one: compiling a meta-schema takes 50–150 ms
 * in one go, which each set's fresh instances paid again at every change.
 */
const metaSchemaCheckers = new Map<Dialect, AjvCore>();

function checkAgainstMetaSchema(dialect: Dialect, schema: object): void {
  let checker = metaSchemaCheckers.get(dialect);
  if (checker === undefined) {
    checker = newAjv(dialect, false, true);
    metaSchemaCheckers.set(dialect, checker);
  }
  // ajv's own words when addSchema checks it.
  if (!checker.validateSchema(schema))
    throw new Error(`schema is invalid: ${checker.errorsText(checker.errors)}`);
}

/**
 * The longest the compile of a set runs before the event loop gets a turn:
 * a few hundred types take a second or more to compile, which in one go
 * stalled every request and socket of the process at each change of the set
 * (every instance at once, as they refresh alike). The set in use serves
 * meanwhile.
 */
const COMPILE_SLICE_MS = 10;

async function compileAll(
  schemas: Record<string, object>,
  schemaNumbers: ExactNumbers,
  warn: (type: string, warning: string) => void,
): Promise<Map<string, ValidateFunction>> {
  checkNoEndlessRecursion(schemas);
  let sliceStarted = performance.now();
  const yieldWhenDue = async () => {
    if (performance.now() - sliceStarted < COMPILE_SLICE_MS) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    sliceStarted = performance.now();
  };
  let compiling = "";
  // ajv prints its warnings (`unknown format "x" ignored`: a typo that checks nothing) on the console,
  // which would break the JSON log lines; each goes to the log once (ajv says some twice), naming its type.
  const warnings = new Set<string>();
  const logger = {
    log: () => {},
    warn: (...parts: unknown[]) => {
      const warning = parts.join(" ");
      if (!warnings.has(`${compiling}\0${warning}`)) {
        warnings.add(`${compiling}\0${warning}`);
        warn(compiling, warning);
      }
    },
    error: (...parts: unknown[]) => warn(compiling, parts.join(" ")),
  };
  // Fresh instances per set: schemas of a replaced set (and their $ids) do not linger.
  const instances = new Map<Dialect, AjvCore>();
  const instanceFor = (dialect: Dialect): AjvCore => {
    let ajv = instances.get(dialect);
    if (ajv === undefined) {
      ajv = newAjv(dialect, logger, false);
      instances.set(dialect, ajv);
    }
    return ajv;
  };
  // All added before any is compiled: a schema may $ref another type's by its $id, whichever file sorts first.
  const added: [string, AjvCore][] = [];
  const patternsChecked = new Set<string>();
  for (const [type, schema] of Object.entries(schemas)) {
    await yieldWhenDue();
    compiling = type;
    try {
      const dialect = dialectOf(schema);
      const copy = withExactNumericKeywords(schema, schemaNumbers) as object;
      checkAgainstMetaSchema(dialect, copy);
      checkPatternsRunInTime(schema, patternsChecked);
      const ajv = instanceFor(dialect);
      ajv.addSchema(copy, type);
      added.push([type, ajv]);
    } catch (error) {
      throw doesNotCompile(type, error);
    }
  }
  const validators = new Map<string, ValidateFunction>();
  for (const [type, ajv] of added) {
    await yieldWhenDue();
    compiling = type;
    try {
      validators.set(type, ajv.getSchema(type) as ValidateFunction);
    } catch (error) {
      throw doesNotCompile(type, error);
    }
  }
  return validators;
}

function doesNotCompile(type: string, error: unknown): Error {
  return new Error(`schema for "${type}" does not compile: ${(error as Error).message}`);
}

function describeErrors(validate: ValidateFunction): string {
  return (validate.errors ?? [])
    .slice(0, MAX_REASONS)
    .map((error) => `data${error.instancePath} ${error.message ?? "is invalid"}${propertyNamed(error)}`)
    .join("; ");
}

/** Longest property name quoted in a reason: the name is the client's, of any length. */
const MAX_NAME_IN_REASON = 64;

/**
 * ajv's message for a property the schema does not allow leaves out which one
 * ("must NOT have additional properties"): without it, a client has to diff its
 * object against the schema to find the culprit.
 */
function propertyNamed(error: { params: Record<string, unknown> }): string {
  const name = error.params.additionalProperty ?? error.params.unevaluatedProperty;
  if (typeof name !== "string") return "";
  const shown = name.length > MAX_NAME_IN_REASON ? `${name.slice(0, MAX_NAME_IN_REASON)}…` : name;
  return `: ${JSON.stringify(shown)}`;
}
