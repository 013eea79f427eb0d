import { readFile } from "node:fs/promises";
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";

/** The S3 API server started by scripts/services (moto), which checks signatures against the env credentials. */
export function s3Service() {
  const endpoint = process.env.S3_ENDPOINT;
  const requestLog = process.env.S3_REQUEST_LOG;
  if (!endpoint || !requestLog || !process.env.AWS_ACCESS_KEY_ID) {
    throw new Error(
      'S3_ENDPOINT, S3_REQUEST_LOG and AWS_ACCESS_KEY_ID must be set: run `eval "$(scripts/services env)"` first',
    );
  }
  return { endpoint, requestLog };
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** A bucket of the test's own, so tests never read each other's objects or requests. */
export class TestBucket {
  private readonly keys = new Set<string>();

  private constructor(
    readonly name: string,
    private readonly client: S3Client,
  ) {}

  static async create(): Promise<TestBucket> {
    const { endpoint } = s3Service();
    // Credentials and region from the environment, like the gateway's.
    const client = new S3Client({ endpoint, forcePathStyle: true, region: process.env.AWS_REGION });
    const name = `egw-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    await client.send(new CreateBucketCommand({ Bucket: name }));
    return new TestBucket(name, client);
  }

  url(key: string): string {
    return `s3://${this.name}/${key}`;
  }

  /** Writes (or replaces) an object and returns its new ETag. */
  async put(key: string, body: string | object): Promise<string> {
    this.keys.add(key);
    const text = typeof body === "string" ? body : JSON.stringify(body);
    const { ETag } = await this.client.send(
      new PutObjectCommand({ Bucket: this.name, Key: key, Body: text }),
    );
    return ETag as string;
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.name, Key: key }));
  }

  /**
   * The statuses the server answered each GET of `key` with, oldest first, read
   * from its access log: what was downloaded (200) and what was not (304).
   */
  async getStatuses(key: string): Promise<number[]> {
    const log = await readFile(s3Service().requestLog, "utf8");
    const line = new RegExp(
      `"GET /${escapeRegExp(this.name)}/${escapeRegExp(key)}(?:\\?[^ "]*)? HTTP/[\\d.]+" (\\d{3})`,
      "g",
    );
    return [...log.matchAll(line)].map((match) => Number(match[1]));
  }

  async destroy(): Promise<void> {
    for (const key of this.keys) await this.delete(key);
    await this.client.send(new DeleteBucketCommand({ Bucket: this.name }));
    this.client.destroy();
  }
}

/** Polls until `condition` holds, or fails naming `what`. */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}
