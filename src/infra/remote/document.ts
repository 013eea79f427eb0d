import { createReadStream } from "node:fs";
import { readCapped } from "../../lib/read-capped.ts";
import type { Logger } from "../../log/logger.ts";
import { parseS3Url, type S3ObjectClient } from "../aws/s3.ts";

/** One read of a document: its text and ETag, or "not-modified" when it still has the ETag the reader sent. */
export type DocumentRead = { text: string; etag?: string } | "not-modified";

const URL_TIMEOUT_MS = 10_000;
/**
 * The largest schema or quota document read from a URL or S3: a refresh reads
 * it whole, every SCHEMAS_REFRESH_MS, so a wrong URL or a runaway object must
 * not fill the heap. 16 MiB holds the largest quota table (100 000 tenants of
 * 64-character names, indented) and schemas far beyond any real bundle.
 */
export const MAX_DOCUMENT_BYTES = 16 * 1024 * 1024;
/**
 * While refreshes keep failing, a line at most this often when the failure
 * stays the same: every refresh counts in the metric, but a line a refresh
 * (each second at SCHEMAS_REFRESH_MS=1000) would bury the rest of the log.
 */
export const FAILURE_REPEAT_LOG_MS = 10 * 60_000;
/** …and at most this often when it changed (a 404 that became bad JSON), so flapping errors cannot flood either. */
export const FAILURE_CHANGE_LOG_MS = 60_000;

/**
 * Reads a document from a file, an http(s) URL or `s3://bucket/key`. The URL
 * and S3 reads are conditional on `etag` (If-None-Match), so an unchanged
 * document is not downloaded again, and stop past `maxBytes`. Rejects on
 * anything unreadable or too large.
 */
export async function readDocument(
  source: string,
  etag: string | undefined,
  s3Client: S3ObjectClient | undefined,
  timeoutMs: number = URL_TIMEOUT_MS,
  maxBytes: number = MAX_DOCUMENT_BYTES,
): Promise<DocumentRead> {
  if (/^https?:\/\//i.test(source)) return readUrl(source, etag, timeoutMs, maxBytes);
  if (source.startsWith("s3://")) {
    const location = parseS3Url(source);
    if (!s3Client) throw new Error(`${source}: no S3 client given`);
    return s3Client.getObject(location, etag, maxBytes);
  }
  return { text: await readLocalFile(source, maxBytes) };
}

/**
 * A file's text, read as it streams and refused past `maxBytes`, as a URL's
 * is: a path to something endless (`/dev/zero`) or huge would otherwise hang
 * the start or fill the heap.
 */
export function readLocalFile(path: string, maxBytes: number = MAX_DOCUMENT_BYTES): Promise<string> {
  return readCapped(
    createReadStream(path),
    maxBytes,
    undefined,
    () => new Error(`${path}: larger than ${maxBytes} bytes, the limit of a schema or quota document`),
  );
}

async function readUrl(
  source: string,
  etag: string | undefined,
  timeoutMs: number,
  maxBytes: number,
): Promise<DocumentRead> {
  const signal = AbortSignal.timeout(timeoutMs);
  // fetch's own errors name no URL, and say little: a bare "The operation timed out." (a DOMException
  // whose every constant the log then lists) on Bun, "fetch failed" with the reason in its cause on Node.
  const failed = (error: unknown) =>
    new Error(`GET ${source}: ${signal.aborted ? `no answer within ${timeoutMs} ms` : reasonOf(error)}`);
  const response = await get(source, etag, signal).catch((error: unknown) => {
    throw failed(error);
  });
  if (response.status === 304 || !response.ok) {
    await response.body?.cancel(); // frees the pooled connection now rather than at GC
    if (response.status === 304) return "not-modified";
    throw new Error(`GET ${source}: HTTP ${response.status}`);
  }
  const declared = response.headers.get("content-length");
  const text =
    response.body === null
      ? ""
      : await readCapped(response.body, maxBytes, declared === null ? undefined : Number(declared)).catch(
          (error: unknown) => {
            throw failed(error);
          },
        );
  return { text, etag: response.headers.get("etag") ?? undefined };
}

/**
 * GET `source`, conditional on `etag`. Its `user:password@` goes as a Basic
 * Authorization header, the URL without them: Bun's fetch sends them so,
 * Node's refuses such a URL ("Request cannot be constructed from a URL that
 * includes credentials").
 */
async function get(source: string, etag: string | undefined, signal: AbortSignal): Promise<Response> {
  const url = new URL(source);
  const headers: Record<string, string> = {};
  if (etag) headers["if-none-match"] = etag;
  if (url.username !== "" || url.password !== "") {
    const credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    headers.authorization = `Basic ${Buffer.from(credentials).toString("base64")}`;
    url.username = "";
    url.password = "";
  }
  return fetch(url, { headers, signal });
}

/** What went wrong, from the error that says it: Node's undici keeps it in `cause` (connect ECONNREFUSED …). */
function reasonOf(error: unknown): string {
  const cause = (error as { cause?: unknown } | undefined)?.cause;
  const said = cause instanceof Error ? cause : error;
  return (said instanceof Error ? said.message : String(said)).trim();
}

/** A loaded copy: the value in use and the ETag to send on the next read. */
export interface Loaded<T> {
  value: T;
  etag?: string;
}

export interface RefreshedOptions<T> {
  /** What the document is, for the log. */
  name: string;
  source: string;
  refreshMs: number;
  log: Logger;
  /**
   * Reads and parses the document, given the copy in use; "not-modified"
   * keeps it. Rejects when the document is unreadable or invalid.
   */
  load(current: Loaded<T> | undefined): Promise<Loaded<T> | "not-modified">;
  onRefreshFailure?(): void;
  /** The clock of the failure log's pacing; Date.now unless a test drives it. */
  now?: () => number;
}

/** Refreshes failing since a good one: what the log said last, and when. */
interface Failing {
  since: number;
  failures: number;
  loggedReason: string;
  loggedAt: number;
}

/**
 * A document loaded at start and refreshed in the background. A refresh that
 * fails (unreachable, invalid) keeps the last good copy, is logged and
 * counted; refreshes never overlap, so a slow source cannot pile them up.
 * A run of failures is logged when it starts, then again only when the error
 * changed or as a reminder (see FAILURE_REPEAT_LOG_MS), and its end once.
 */
export class RefreshedDocument<T> {
  private loaded: Loaded<T> | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private refreshing = false;
  private failing: Failing | undefined;

  constructor(private readonly options: RefreshedOptions<T>) {}

  /** The initial load: rejects if it fails (the gateway then refuses to start); then refreshes. */
  async start(): Promise<void> {
    await this.load();
    this.timer = setInterval(() => void this.refresh(), this.options.refreshMs);
    this.timer.unref?.(); // the refresh alone must not keep the process alive
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The copy in use; undefined before `start` resolved. */
  get value(): T | undefined {
    return this.loaded?.value;
  }

  private async load(): Promise<void> {
    const next = await this.options.load(this.loaded);
    if (next !== "not-modified") this.loaded = next;
  }

  private async refresh(): Promise<void> {
    if (this.refreshing) return;
    this.refreshing = true;
    const { log, name, source } = this.options;
    const now = this.options.now ?? Date.now;
    try {
      await this.load();
      if (this.failing) {
        const { failures, since } = this.failing;
        log.info({ source, failures, failingForMs: now() - since }, `${name} refresh works again`);
        this.failing = undefined;
      }
    } catch (error) {
      this.options.onRefreshFailure?.();
      const at = now();
      const reason = error instanceof Error ? error.message : String(error);
      const failing = this.failing ?? { since: at, failures: 0, loggedReason: "", loggedAt: -Infinity };
      this.failing = failing;
      failing.failures++;
      const quiet = at - failing.loggedAt;
      if (
        quiet >= FAILURE_REPEAT_LOG_MS ||
        (reason !== failing.loggedReason && quiet >= FAILURE_CHANGE_LOG_MS)
      ) {
        log.warn(
          { err: error, source, failures: failing.failures, failingForMs: at - failing.since },
          `${name} refresh failed; keeping the last good copy`,
        );
        failing.loggedReason = reason;
        failing.loggedAt = at;
      }
    } finally {
      this.refreshing = false;
    }
  }
}
