import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";

/** Raw schema documents by event type, plus a fingerprint to skip recompiling an unchanged set. */
export interface SchemaDocuments {
  schemas: Record<string, unknown>;
  fingerprint: string;
}

export type S3Fetch = (bucket: string, key: string) => Promise<string>;

const TYPE_NAME = /^[A-Za-z0-9._-]{1,128}$/;

/** Loads schemas from a folder (`<type>.json` each), an http(s) URL or `s3://bucket/key` (one `{type: schema}` document). */
export async function loadSchemaDocuments(
  source: string,
  fetchS3: S3Fetch = defaultS3Fetch,
): Promise<SchemaDocuments> {
  if (/^https?:\/\//.test(source)) return fromDocument(await fetchUrl(source));
  const s3 = /^s3:\/\/([^/]+)\/(.+)$/.exec(source);
  if (s3) return fromDocument(await fetchS3(s3[1] as string, s3[2] as string));
  return fromFolder(source);
}

async function fromFolder(folder: string): Promise<SchemaDocuments> {
  const names = (await readdir(folder)).filter((name) => name.endsWith(".json")).sort();
  const schemas: Record<string, unknown> = {};
  const hash = createHash("sha256");
  for (const name of names) {
    const type = name.slice(0, -".json".length);
    if (!TYPE_NAME.test(type)) throw new Error(`schema file ${name}: not a valid event type name`);
    const text = await readFile(join(folder, name), "utf8");
    hash.update(name).update("\0").update(text).update("\0");
    try {
      schemas[type] = JSON.parse(text);
    } catch (error) {
      throw new Error(`schema file ${name}: ${(error as Error).message}`);
    }
  }
  if (names.length === 0) throw new Error(`no <type>.json schema in ${folder}`);
  return { schemas, fingerprint: hash.digest("hex") };
}

function fromDocument(text: string): SchemaDocuments {
  const parsed = JSON.parse(text) as unknown;
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new Error("a schema document must be an object of { type: schema }");
  }
  for (const type of Object.keys(parsed)) {
    if (!TYPE_NAME.test(type)) throw new Error(`"${type}" is not a valid event type name`);
  }
  return {
    schemas: parsed as Record<string, unknown>,
    fingerprint: createHash("sha256").update(text).digest("hex"),
  };
}

async function fetchUrl(url: string): Promise<string> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  return response.text();
}

/** The AWS SDK is loaded only when an s3:// source is configured. */
async function defaultS3Fetch(bucket: string, key: string): Promise<string> {
  const [{ S3Client, GetObjectCommand }, { fromNodeProviderChain }] = await Promise.all([
    import("@aws-sdk/client-s3"),
    import("@aws-sdk/credential-providers"),
  ]);
  const client = new S3Client({
    region: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? "us-east-1",
    credentials: fromNodeProviderChain(),
  });
  try {
    const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    if (!object.Body) throw new Error(`s3://${bucket}/${key} is empty`);
    return await object.Body.transformToString("utf8");
  } finally {
    client.destroy();
  }
}
