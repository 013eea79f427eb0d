import Ajv2020, { type ValidateFunction } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import type { Logger } from "../log/logger.ts";
import { loadSchemaDocuments, type S3Fetch } from "./sources.ts";

export type Validation = { ok: true } | { ok: false; reason: string };

export interface SchemaRegistry {
  /** Validates a record's `data` against the schema of its `type`. */
  validate(type: string, data: unknown): Validation;
  types(): string[];
  /** First load (rejects if it fails), then a background refresh every `refreshMs`. */
  start(): Promise<void>;
  stop(): void;
}

export interface SchemaRegistryOptions {
  /** A folder, an http(s) URL, or s3://bucket/key. */
  source: string;
  refreshMs: number;
  log: Logger;
  onRefreshFailure?: () => void;
  onLoaded?: (typeCount: number) => void;
  fetchS3?: S3Fetch;
}

const MAX_REASONS = 3;

function compileAll(schemas: Record<string, unknown>): Map<string, ValidateFunction> {
  // strict: false so user schemas with vendor keywords still load; a schema that does not compile fails the set.
  const ajv = new Ajv2020({ allErrors: false, strict: false });
  addFormats.default(ajv);
  const compiled = new Map<string, ValidateFunction>();
  for (const [type, schema] of Object.entries(schemas)) {
    try {
      compiled.set(type, ajv.compile(schema as object));
    } catch (error) {
      throw new Error(`schema for "${type}": ${(error as Error).message}`);
    }
  }
  return compiled;
}

function describe(validate: ValidateFunction): string {
  return (validate.errors ?? [])
    .slice(0, MAX_REASONS)
    .map((error) => `data${error.instancePath} ${error.message ?? "is invalid"}`)
    .join("; ");
}

/**
 * JSON Schemas (draft 2020-12) per event type, compiled once with ajv. A
 * refresh that fails (unreachable source, bad JSON, a schema that does not
 * compile) keeps the last good set; a new set is swapped in whole.
 */
export function createSchemaRegistry(options: SchemaRegistryOptions): SchemaRegistry {
  let validators = new Map<string, ValidateFunction>();
  let fingerprint = "";
  let timer: ReturnType<typeof setInterval> | undefined;
  let refreshing = false;

  async function load(): Promise<void> {
    const documents = await loadSchemaDocuments(options.source, options.fetchS3);
    if (documents.fingerprint === fingerprint) return;
    const compiled = compileAll(documents.schemas);
    validators = compiled;
    fingerprint = documents.fingerprint;
    options.onLoaded?.(compiled.size);
    options.log.info({ source: options.source, types: [...compiled.keys()] }, "schemas loaded");
  }

  async function refresh(): Promise<void> {
    if (refreshing) return;
    refreshing = true;
    try {
      await load();
    } catch (error) {
      options.onRefreshFailure?.();
      options.log.warn(
        { err: error, source: options.source },
        "schema refresh failed; keeping the last good set",
      );
    } finally {
      refreshing = false;
    }
  }

  return {
    validate(type, data) {
      const validate = validators.get(type);
      if (!validate) return { ok: false, reason: `unknown type "${type}"` };
      return validate(data) ? { ok: true } : { ok: false, reason: describe(validate) };
    },
    types: () => [...validators.keys()],
    async start() {
      await load();
      timer = setInterval(() => void refresh(), options.refreshMs);
      timer.unref?.();
    },
    stop() {
      if (timer) clearInterval(timer);
    },
  };
}
