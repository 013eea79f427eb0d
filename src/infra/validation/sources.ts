import { createHash } from "node:crypto";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { type ExactNumbers, exactNumbersOf } from "../../lib/exact-numbers.ts";
import { DEPTH_ERROR, DUPLICATE_KEY_ERROR, JsonScanner } from "../../lib/json-scan.ts";
import type { S3ObjectClient } from "../aws/s3.ts";
import { readDocument, readLocalFile } from "../remote/document.ts";

/** The raw schemas of one load, before compilation. */
export interface SchemaDocuments {
  /** JSON Schema (draft 2020-12) for each event type's `data`. */
  schemas: Record<string, object>;
  /**
   * The schemas' numbers whose text JSON.parse rounded (`"maximum":
   * 9007199254740993`), by where they sit (see `exactNumbersOf`): a limit is
   * the number its author wrote, not the double nearest to it.
   */
  exactNumbers: ExactNumbers;
  /** sha256 of the raw text(s): an identical set is not compiled again. */
  hash: string;
  /** The URL's or S3 object's ETag, sent back as If-None-Match on the next load. */
  etag?: string;
}

/** "not-modified": the URL or S3 object still has the ETag the caller passed. */
export type SchemaLoad = SchemaDocuments | "not-modified";

export type { S3ObjectClient } from "../aws/s3.ts";

export interface LoadOptions {
  /** ETag of the set in use, for a conditional request. */
  etag?: string;
  /** Needed for an s3:// source. */
  s3Client?: S3ObjectClient;
}

const TYPE_NAME = /^[A-Za-z0-9._-]{1,128}$/;
/** Nesting allowed in one schema text (a document of schemas is one level more than its schemas). */
export const MAX_SCHEMA_DEPTH = 256;

/**
 * Reads the schemas from a folder (one `<type>.json` per event type), an
 * http(s) URL or `s3://bucket/key` (one `{ "<type>": <schema>, … }` document).
 * Rejects on anything unreadable, so a caller never gets a partial set.
 */
export async function loadSchemaDocuments(source: string, options: LoadOptions = {}): Promise<SchemaLoad> {
  if (!/^https?:\/\//i.test(source) && !source.startsWith("s3://")) return loadFromFolder(source);
  const read = await readDocument(source, options.etag, options.s3Client);
  return read === "not-modified" ? read : parseDocument(read.text, source, read.etag);
}

async function loadFromFolder(folder: string): Promise<SchemaDocuments> {
  // Names, not file types: a Kubernetes ConfigMap mounts each file as a symlink, which readFile follows.
  const names = (await readdir(folder)).filter((name) => name.endsWith(".json")).sort();
  const hash = createHash("sha256");
  const entries: [string, object][] = [];
  const exactNumbers: ExactNumbers = new WeakMap();
  for (const name of names) {
    const type = checkedType(name.slice(0, -".json".length), `${folder}/${name}`);
    const text = await readLocalFile(join(folder, name));
    // The name is part of the content: renaming a file renames its event type.
    hash.update(name).update("\0").update(text).update("\0");
    entries.push([type, checkedSchema(parseJson(text, name, exactNumbers), name)]);
  }
  // fromEntries defines own properties, so even a type named "__proto__" stays a plain key.
  return { schemas: nonEmpty(Object.fromEntries(entries), folder), exactNumbers, hash: hash.digest("hex") };
}

function parseDocument(text: string, origin: string, etag: string | undefined): SchemaDocuments {
  const exactNumbers: ExactNumbers = new WeakMap();
  const document = parseJson(text, origin, exactNumbers);
  if (!isJsonObject(document)) throw new Error(`${origin}: expected a document { "<type>": <schema>, … }`);
  for (const [type, schema] of Object.entries(document)) {
    checkedSchema(schema, `${origin} "${checkedType(type, origin)}"`);
  }
  return {
    schemas: nonEmpty(document as Record<string, object>, origin),
    exactNumbers,
    hash: createHash("sha256").update(text).digest("hex"),
    etag,
  };
}

/** JSON.parse of `text`, with the texts of the numbers it rounded added to `exactNumbers`. */
function parseJson(text: string, origin: string, exactNumbers: ExactNumbers): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Error(`${origin}: ${(error as Error).message}`);
  }
  const bytes = new TextEncoder().encode(text);
  if (!scanned(bytes, origin, false)) return value;
  // exactNumbersOf pairs the text with the parsed value member by member, which a key held twice would mislead.
  scanned(bytes, origin, true);
  exactNumbersOf(text, value, exactNumbers);
  return value;
}

/**
 * Runs the strict scanner over a text JSON.parse accepted; whether a number
 * in it is not exactly its double. Throws on a text nested deeper than
 * MAX_SCHEMA_DEPTH and, with `rejectDuplicateKeys`, on an object holding a key twice.
 */
function scanned(bytes: Uint8Array, origin: string, rejectDuplicateKeys: boolean): boolean {
  const scanner = new JsonScanner(bytes, { maxDepth: MAX_SCHEMA_DEPTH, rejectDuplicateKeys });
  try {
    scanner.value();
    scanner.end();
  } catch (failure) {
    if (failure === DEPTH_ERROR) throw new Error(`${origin}: nesting deeper than ${MAX_SCHEMA_DEPTH} levels`);
    if (failure === DUPLICATE_KEY_ERROR) {
      throw new Error(
        `${origin}: duplicate key "${scanner.duplicateKey}" in a schema with numbers beyond a double's precision`,
      );
    }
    throw new Error(`${origin}: not strict JSON`);
  }
  return scanner.inexactNumbers;
}

function checkedType(type: string, origin: string): string {
  if (!TYPE_NAME.test(type)) throw new Error(`${origin}: "${type}" is not a valid event type name`);
  return type;
}

function checkedSchema(schema: unknown, origin: string): object {
  if (!isJsonObject(schema)) throw new Error(`${origin}: a schema must be a JSON object`);
  return schema;
}

/** A set without any type would reject every event: a misconfiguration, not a state to switch to. */
function nonEmpty(schemas: Record<string, object>, origin: string): Record<string, object> {
  if (Object.keys(schemas).length === 0) throw new Error(`${origin}: no event type schemas`);
  return schemas;
}

function isJsonObject(value: unknown): value is object {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
