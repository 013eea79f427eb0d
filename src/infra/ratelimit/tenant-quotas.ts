import { readFile } from "node:fs/promises";
import type { Logger } from "../../log/logger.ts";
import { type S3ObjectClient, sharedS3Client } from "../aws/s3.ts";

export interface TenantQuotaOptions {
  /** A JSON file path, an http(s) URL or s3://bucket/key holding `{ "<tenant>": { "eventsPerSec": n } }`. */
  source: string;
  refreshMs: number;
  log: Logger;
  s3Client?: S3ObjectClient;
}

const MAX_TENANTS = 100_000;
const TENANT = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * The in-memory table of per-tenant event budgets that override
 * RATE_LIMIT_EVENTS_PER_SEC. Loaded at start, refreshed in the background; a
 * failed or invalid refresh keeps the last good table.
 */
export class TenantQuotas {
  private quotas: ReadonlyMap<string, number> = new Map();
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
    } finally {
      this.refreshing = false;
    }
  }

  private async load(): Promise<void> {
    const table = parseQuotas(await readDocument(this.options.source, this.options.s3Client));
    const changed =
      table.size !== this.quotas.size ||
      [...table].some(([tenant, value]) => this.quotas.get(tenant) !== value);
    this.quotas = table;
    if (changed)
      this.options.log.info({ source: this.options.source, tenants: table.size }, "tenant quotas loaded");
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

async function readDocument(source: string, s3Client: S3ObjectClient | undefined): Promise<string> {
  if (/^https?:\/\//i.test(source)) {
    const response = await fetch(source, { signal: AbortSignal.timeout(10_000) });
    if (!response.ok) throw new Error(`GET ${source}: HTTP ${response.status}`);
    return response.text();
  }
  const s3 = /^s3:\/\/([^/]+)\/(.+)$/.exec(source);
  if (s3) {
    const { GetObjectCommand } = await import("@aws-sdk/client-s3");
    const client = s3Client ?? (await sharedS3Client());
    const object = await client.send(new GetObjectCommand({ Bucket: s3[1], Key: s3[2] }));
    if (!object.Body) throw new Error(`${source}: empty object`);
    return object.Body.transformToString("utf8");
  }
  return readFile(source, "utf8");
}
