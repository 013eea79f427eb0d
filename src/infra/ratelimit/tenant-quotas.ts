import type { Logger } from "../../log/logger.ts";
import type { S3ObjectClient } from "../aws/s3.ts";
import { RefreshedDocument, readDocument } from "../remote/document.ts";

export interface TenantQuotaOptions {
  /** A JSON file path, an http(s) URL or s3://bucket/key holding `{ "<tenant>": { "eventsPerSec": n } }`. */
  source: string;
  refreshMs: number;
  log: Logger;
  /** Needed for an s3:// source. */
  s3Client?: S3ObjectClient;
  onRefreshFailure?: () => void;
}

const MAX_TENANTS = 100_000;
const TENANT = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * The in-memory table of per-tenant event budgets that override
 * RATE_LIMIT_EVENTS_PER_SEC. Loaded at start, refreshed in the background; a
 * failed or invalid refresh keeps the last good table. A URL or S3 object is
 * read conditionally on its ETag, so an unchanged one is not downloaded again.
 */
export class TenantQuotas {
  private readonly document: RefreshedDocument<ReadonlyMap<string, number>>;

  constructor(options: TenantQuotaOptions) {
    const { source, log } = options;
    this.document = new RefreshedDocument({
      name: "tenant quota",
      source,
      refreshMs: options.refreshMs,
      log,
      onRefreshFailure: options.onRefreshFailure,
      load: async (current) => {
        const read = await readDocument(source, current?.etag, options.s3Client);
        if (read === "not-modified") return read;
        const table = parseQuotas(read.text);
        const previous = current?.value;
        if (!previous || table.size !== previous.size || [...table].some(([t, v]) => previous.get(t) !== v))
          log.info({ source, tenants: table.size }, "tenant quotas loaded");
        return { value: table, etag: read.etag };
      },
    });
  }

  start(): Promise<void> {
    return this.document.start();
  }

  stop(): void {
    this.document.stop();
  }

  eventsPerSec(tenant: string): number | undefined {
    return this.document.value?.get(tenant);
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
