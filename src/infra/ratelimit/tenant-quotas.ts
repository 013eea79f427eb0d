import type { Logger } from "../../log/logger.ts";
import type { S3ObjectClient } from "../aws/s3.ts";
import { RefreshedDocument, readDocument } from "../remote/document.ts";

export interface TenantQuotaOptions {
  /** A JSON file path, an http(s) URL or s3://bucket/key holding `{ "<tenant>": { "eventsPerSec"?: n, "dedupWindowSec"?: n } }`. */
  source: string;
  refreshMs: number;
  log: Logger;
  /** Needed for an s3:// source. */
  s3Client?: S3ObjectClient;
  onRefreshFailure?: () => void;
}

/** One tenant's entry in the table: each setting overrides a default when present. */
export interface TenantSettings {
  /** Event budget overriding RATE_LIMIT_EVENTS_PER_SEC. */
  eventsPerSec?: number;
  /** Per-record deduplication by `id` within this window (ms); off when absent. */
  dedupWindowMs?: number;
}

const MAX_TENANTS = 100_000;
/** A week: ids are kept per record, so the window multiplies the store's size. */
const MAX_DEDUP_WINDOW_SEC = 7 * 86_400;
const TENANT = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * The in-memory table of per-tenant settings: event budgets that override
 * RATE_LIMIT_EVENTS_PER_SEC, and the tenants that asked for per-record
 * deduplication, with their window. Loaded at start, refreshed in the background; a
 * failed or invalid refresh keeps the last good table. A URL or S3 object is
 * read conditionally on its ETag, so an unchanged one is not downloaded again.
 */
export class TenantQuotas {
  private readonly document: RefreshedDocument<ReadonlyMap<string, TenantSettings>>;

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
        if (
          !previous ||
          table.size !== previous.size ||
          [...table].some(([t, v]) => changed(previous.get(t), v))
        )
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
    return this.document.value?.get(tenant)?.eventsPerSec;
  }

  /** Undefined (the usual answer) for a tenant that did not ask for per-record deduplication. */
  dedupWindowMs(tenant: string): number | undefined {
    return this.document.value?.get(tenant)?.dedupWindowMs;
  }
}

function changed(before: TenantSettings | undefined, after: TenantSettings): boolean {
  return before?.eventsPerSec !== after.eventsPerSec || before?.dedupWindowMs !== after.dedupWindowMs;
}

export function parseQuotas(text: string): Map<string, TenantSettings> {
  const document = JSON.parse(text) as unknown;
  if (document === null || typeof document !== "object" || Array.isArray(document)) {
    throw new Error('expected { "<tenant>": { "eventsPerSec"?: n, "dedupWindowSec"?: n } }');
  }
  const entries = Object.entries(document);
  if (entries.length > MAX_TENANTS) throw new Error(`more than ${MAX_TENANTS} tenants`);
  const table = new Map<string, TenantSettings>();
  for (const [tenant, entry] of entries) {
    if (!TENANT.test(tenant)) throw new Error(`"${tenant}" is not a tenant name`);
    const { eventsPerSec, dedupWindowSec } = (entry ?? {}) as {
      eventsPerSec?: unknown;
      dedupWindowSec?: unknown;
    };
    if (eventsPerSec === undefined && dedupWindowSec === undefined)
      throw new Error(`${tenant}: needs eventsPerSec or dedupWindowSec`);
    const settings: TenantSettings = {};
    if (eventsPerSec !== undefined) {
      if (!Number.isInteger(eventsPerSec) || (eventsPerSec as number) < 1)
        throw new Error(`${tenant}: eventsPerSec must be a positive integer`);
      settings.eventsPerSec = eventsPerSec as number;
    }
    if (dedupWindowSec !== undefined) {
      const seconds = dedupWindowSec as number;
      if (!Number.isInteger(seconds) || seconds < 1 || seconds > MAX_DEDUP_WINDOW_SEC)
        throw new Error(`${tenant}: dedupWindowSec must be an integer from 1 to ${MAX_DEDUP_WINDOW_SEC}`);
      settings.dedupWindowMs = seconds * 1000;
    }
    table.set(tenant, settings);
  }
  return table;
}
