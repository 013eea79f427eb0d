import { GatewayError } from "../domain/errors.ts";

/** Charsets a JSON body is read in: UTF-8 (RFC 8259 §8.1), of which ASCII is a part. */
const READABLE_CHARSETS = new Set(["utf-8", "utf8", "us-ascii"]);
const CHARSET = /;\s*charset\s*=\s*"?([^";\s]*)/i;

/**
 * Refuses with a 415 a `Content-Type` whose `charset` is not UTF-8: the body
 * is read as UTF-8 whatever it says, so a UTF-16 or Latin-1 body would be
 * refused as malformed JSON, or read as other text than the client meant.
 */
export function requireUtf8Charset(contentType: string | undefined): void {
  if (contentType === undefined || !contentType.includes("=")) return;
  const charset = CHARSET.exec(contentType)?.[1]?.toLowerCase();
  if (charset !== undefined && !READABLE_CHARSETS.has(charset))
    throw new GatewayError(
      "unsupported_media_type",
      `charset ${charset} is not supported: JSON is read as UTF-8`,
    );
}
