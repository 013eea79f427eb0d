import { readFile } from "node:fs/promises";
import type { Logger } from "../../log/logger.ts";
import { parseS3Url, type S3ObjectClient } from "../aws/s3.ts";

export interface TenantQuotaOptions {
  /** A JSON file path, an http(s) URL or s3://bucket/key holding `{ "<tenant>": { "eventsPerSec": n } }`. */
  source: string;
  refreshMs: number;
  log: Logger;
  /** Needed for an s3:// source. */
  s3Client?: S3ObjectClient;
  onRefreshFailure?: () => void;
}

/** The document's text, or "not-modified" when the S3 object still has the ETag of the table in use. */
type QuotaDocument = { text: string; etag?: string } | "not-modified";

const MAX_TENANTS = 100_000;
const TENANT = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * The in-memory table of per-tenant event budgets that override
 * RATE_LIMIT_EVENTS_PER_SEC. Loaded at start, refreshed in the background; a
 * failed or invalid refresh keeps the last good table. An S3 object is read
 * conditionally on its ETag, so an unchanged one is not downloaded again.
 */
export class TenantQuotas {
  private quotas: ReadonlyMap<string, number> = new Map();
  private etag: string | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private refreshing = false;

  constructor(private readonly options: TenantQuotaOptions) {}

  async start(): Promise<void> {
    await this.load();
    this.timer = setInterval(() => void this.refresh(), this.options.refreshMs);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  eventsPerSec(tenant: string): number | undefined {
    return this.quotas.get(tenant);
  }

  private async refresh(): Promise<void> {
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      await this.load();
    } catch (error) {
      this.options.log.warn(
        { err: error, source: this.options.source },
        "tenant quota refresh failed; keeping the last table",
      );
      this.options.onRefreshFailure?.();
    } finally {
      this.refreshing = false;
    }
  }

  private async load(): Promise<void> {
    const document = await this.read();
    if (document === "not-modified") return;
    const table = parseQuotas(document.text);
    const changed =
      table.size !== this.quotas.size ||
      [...table].some(([tenant, value]) => this.quotas.get(tenant) !== value);
    this.quotas = table;
    this.etag = document.etag;
    if (changed)
      this.options.log.info({ source: this.options.source, tenants: table.size }, "tenant quotas loaded");
  }

  private async read(): Promise<QuotaDocument> {
    const { source, s3Client } = this.options;
    if (/^https?:\/\//i.test(source)) {
      const response = await fetch(source, { signal: AbortSignal.timeout(10_000) });
      if (!response.ok) throw new Error(`GET ${source}: HTTP ${response.status}`);
      return { text: await response.text() };
    }
    if (source.startsWith("s3://")) {
      const location = parseS3Url(source);
      if (!s3Client) throw new Error(`${source}: no S3 client given`);
      return s3Client.getObject(location, this.etag);
    }
    return { text: await readFile(source, "utf8") };
  }
}

export function parseQuotas(text: string): Map<string, number> {
  const document = JSON.parse(text) as unknown;
  if (document === null || typeof document !== "object" || Array.isArray(document)) {
    throw new Error('expected { "<tenant>": { "eventsPerSec": n } }');
  }
  const entries = Object.entries(document);
  if (entries.length > MAX_TENANTS) throw new Error(`more than ${MAX_TENANTS} tenants`);
  const table = new Map<string, number>();
  for (const [tenant, quota] of entries) {
    const eventsPerSec = (quota as { eventsPerSec?: unknown } | null)?.eventsPerSec;
    if (!TENANT.test(tenant)) throw new Error(`"${tenant}" is not a tenant name`);
    if (!Number.isInteger(eventsPerSec) || (eventsPerSec as number) < 1) {
      throw new Error(`${tenant}: eventsPerSec must be a positive integer`);
    }
    table.set(tenant, eventsPerSec as number);
  }
  return table;
}
