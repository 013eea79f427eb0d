import Ajv2020, { type ValidateFunction } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import type { Logger } from "../../log/logger.ts";
import type { SchemaValidator } from "../../ports/schemas.ts";
import { RefreshedDocument } from "../remote/document.ts";
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
    validate(type, data) {
      const validate = document.value?.validators.get(type);
      if (!validate) return { ok: false, reason: `unknown type "${type}"` };
      return validate(data) ? { ok: true } : { ok: false, reason: describeErrors(validate) };
    },
    types: () => [...(document.value?.validators.keys() ?? [])],
    start: () => document.start(),
    stop: () => document.stop(),
  };
}

function compileAll(schemas: Record<string, object>): Map<string, ValidateFunction> {
  // A fresh instance per set: schemas of a replaced set (and their $ids) do not linger.
  // strict: false so vendor keywords in user schemas load; a schema that does not compile still fails the set.
  const ajv = new Ajv2020({ allErrors: false, strict: false });
  addFormats.default(ajv);
  const validators = new Map<string, ValidateFunction>();
  for (const [type, schema] of Object.entries(schemas)) {
    try {
      validators.set(type, ajv.compile(schema));
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
