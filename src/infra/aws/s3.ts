import type { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { readCapped } from "../../lib/read-capped.ts";

/** Where S3 is and how buckets are addressed (the `s3` section of the config). */
export interface S3Settings {
  /** An S3-compatible store (MinIO, Ceph, moto…); unset: AWS's own endpoint for the region. */
  endpoint: string | undefined;
  /** `endpoint/bucket/key` rather than `bucket.endpoint/key`: most S3-compatible stores need it. */
  forcePathStyle: boolean;
  region: string;
}

export interface S3Location {
  bucket: string;
  key: string;
}

export interface S3Object {
  text: string;
  etag: string | undefined;
}

/** The one S3 call the gateway makes: read a whole object, unless it still has the ETag the caller holds. */
export interface S3ObjectClient {
  /**
   * "not-modified" when the object's ETag is still `ifNoneMatch`; rejects when it is missing, denied, too
   * slow or larger than `maxBytes` (not read past that).
   */
  getObject(
    location: S3Location,
    ifNoneMatch: string | undefined,
    maxBytes: number,
  ): Promise<S3Object | "not-modified">;
}

const S3_URL = /^s3:\/\/([^/]+)\/(.+)$/;
/** A GetObject that has not completed by then fails, so a hung store cannot stall refreshes for good. */
const DEFAULT_TIMEOUT_MS = 10_000;

/** `s3://bucket/key` → its parts; rejects anything else with a message naming the source. */
export function parseS3Url(source: string): S3Location {
  const [, bucket, key] = S3_URL.exec(source) ?? [];
  if (!bucket || !key) throw new Error(`${source}: expected s3://bucket/key`);
  return { bucket, key };
}

/**
 * An S3 client that loads the AWS SDK on its first call, so a gateway with no
 * s3:// source never does. Credentials come from the default AWS chain
 * (environment, shared config files, web identity / IRSA, container and
 * instance metadata) and are cached by the SDK between calls.
 */
export function createS3ObjectClient(
  settings: S3Settings,
  timeoutMs: number = DEFAULT_TIMEOUT_MS,
): S3ObjectClient {
  let sdk: Promise<{ s3: S3Client; GetObjectCommand: typeof GetObjectCommand }> | undefined;
  const loadSdk = () => {
    sdk ??= Promise.all([import("@aws-sdk/client-s3"), import("@aws-sdk/credential-providers")]).then(
      ([{ S3Client, GetObjectCommand }, { fromNodeProviderChain }]) => ({
        s3: new S3Client({
          region: settings.region,
          endpoint: settings.endpoint,
          forcePathStyle: settings.forcePathStyle,
          credentials: fromNodeProviderChain(),
        }),
        GetObjectCommand,
      }),
    );
    return sdk;
  };
  return {
    async getObject({ bucket, key }, ifNoneMatch, maxBytes) {
      const { s3, GetObjectCommand } = await loadSdk();
      const command = new GetObjectCommand({ Bucket: bucket, Key: key, IfNoneMatch: ifNoneMatch });
      const signal = AbortSignal.timeout(timeoutMs);
      try {
        const object = await s3.send(command, { abortSignal: signal });
        if (!object.Body) throw new Error("empty object");
        const body = object.Body as unknown as AsyncIterable<Uint8Array>; // a Node stream: the SDK's Node handler
        return { text: await readCapped(body, maxBytes, object.ContentLength), etag: object.ETag };
      } catch (error) {
        if (isNotModified(error)) return "not-modified";
        // The SDK's errors name no object ("NoSuchKey: The specified key does not exist."): with a schema
        // bucket and a quota bucket, the log would not say which one is missing. So, as a URL's do, they name it.
        throw new Error(
          `GET s3://${bucket}/${key}: ${signal.aborted ? `no answer within ${timeoutMs} ms` : reasonOf(error)}`,
          { cause: error },
        );
      }
    },
  };
}

/** What an SDK error says, with its S3 error code (`AccessDenied: Access Denied`), else its system code. */
function reasonOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  // Node's AggregateError of a refused connection has no message of its own.
  const message = error.message || (typeof code === "string" ? code : "");
  return error.name === "Error" || error.name === "AggregateError" ? message : `${error.name}: ${message}`;
}

/** S3 has no modelled error for 304: the SDK (3.1169) throws one carrying only the status. */
function isNotModified(error: unknown): boolean {
  return (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 304;
}
