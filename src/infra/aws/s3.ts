import type { GetObjectCommand } from "@aws-sdk/client-s3";

/** The one S3 call the gateway makes; a real S3Client fits, and so does a test's stand-in. */
export interface S3ObjectClient {
  send(command: GetObjectCommand): Promise<{
    ETag?: string;
    Body?: { transformToString(encoding?: string): Promise<string> };
  }>;
}

let s3Client: Promise<S3ObjectClient> | undefined;

/** Imported on first use so the gateway loads the AWS SDK only for an s3:// source; shared so credentials are cached. */
export function sharedS3Client(): Promise<S3ObjectClient> {
  s3Client ??= Promise.all([import("@aws-sdk/client-s3"), import("@aws-sdk/credential-providers")]).then(
    ([{ S3Client }, { fromNodeProviderChain }]) =>
      new S3Client({
        region: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? "us-east-1",
        credentials: fromNodeProviderChain(),
      }),
  );
  return s3Client;
}
