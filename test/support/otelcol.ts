import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../e2e/harness.ts";
import { killGroup, spawnGroup } from "./processes.ts";
import { waitUntil } from "./wait.ts";

/** Built from scripts/otelcol by scripts/install-tools. */
export const OTELCOL = join(
  process.env.EDGE_GATEWAY_CACHE ?? join(homedir(), ".cache/edge-gateway"),
  "bin/otelcol",
);
const CONFIG = new URL("./otelcol.yaml", import.meta.url).pathname;

type OtlpValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean };

/** A span as the Collector's file exporter writes it (OTLP/JSON: ids in hex, kind a number). */
export interface CollectedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: Array<{ key: string; value: OtlpValue }>;
  links?: Array<{ traceId: string; spanId: string }>;
  /** `service.name` of the resource that sent it. */
  service: string | undefined;
  /** The attributes of the resource that sent it. */
  resource: Array<{ key: string; value: OtlpValue }>;
}
export const SPAN_KIND_INTERNAL = 1;
export const SPAN_KIND_SERVER = 2;
export const SPAN_KIND_CLIENT = 3;
export const SPAN_KIND_PRODUCER = 4;

export function attribute(
  span: Pick<CollectedSpan, "attributes">,
  key: string,
): string | number | boolean | undefined {
  const value = span.attributes?.find((entry) => entry.key === key)?.value;
  if (value === undefined) return undefined;
  if (value.intValue !== undefined) return Number(value.intValue);
  return value.stringValue ?? value.boolValue;
}

export interface Collector {
  /** For OTEL_EXPORTER_OTLP_ENDPOINT (OTLP/HTTP). */
  endpoint: string;
  /** For OTEL_EXPORTER_OTLP_ENDPOINT with OTEL_EXPORTER_OTLP_PROTOCOL=grpc. */
  grpcEndpoint: string;
  /** Every span written to the file so far. */
  spans(): CollectedSpan[];
  /** Resolves with the spans of `traceId` once `done` says they are all there; fails naming `what` at the deadline. */
  waitForTrace(
    traceId: string,
    done: (spans: CollectedSpan[]) => boolean,
    what: string,
    timeoutMs?: number,
  ): Promise<CollectedSpan[]>;
  stop(): Promise<void>;
}

/**
 * Starts the real OpenTelemetry Collector (OTLP/HTTP and OTLP/gRPC
 * receivers, file exporter) on free loopback ports. A missing binary fails the test with what
 * to run: the tracing tests never skip.
 */
export async function startCollector(): Promise<Collector> {
  if (!existsSync(OTELCOL)) {
    throw new Error(
      `no OpenTelemetry Collector at ${OTELCOL}: run scripts/install-tools (it builds scripts/otelcol)`,
    );
  }
  const folder = mkdtempSync(join(tmpdir(), "otelcol-"));
  const spansFile = join(folder, "spans.jsonl");
  const port = await freePort();
  const grpcPort = await freePort();
  const child = spawnGroup([OTELCOL, `--config=file:${CONFIG}`], {
    env: {
      ...process.env,
      OTELCOL_HTTP_PORT: String(port),
      OTELCOL_GRPC_PORT: String(grpcPort),
      OTELCOL_SPANS_FILE: spansFile,
    },
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
  });
  const endpoint = `http://127.0.0.1:${port}`;
  let exited = false;
  child.exited.then(() => {
    exited = true;
  });
  try {
    await waitUntil(
      async () => {
        if (exited) throw new Error(`the Collector exited: ${await new Response(child.stderr).text()}`);
        // An empty export answers 200 once the receiver listens.
        return fetch(`${endpoint}/v1/traces`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: "{}",
        }).then(
          (response) => response.ok,
          () => false,
        );
      },
      "the Collector's OTLP/HTTP receiver",
      20_000,
    );
  } catch (error) {
    await killGroup(child);
    rmSync(folder, { recursive: true, force: true });
    throw error;
  }

  const spans = (): CollectedSpan[] => {
    if (!existsSync(spansFile)) return [];
    const found: CollectedSpan[] = [];
    for (const line of readFileSync(spansFile, "utf8").split("\n")) {
      // The last line may be half written.
      if (!line.endsWith("}")) continue;
      const request = JSON.parse(line) as {
        resourceSpans?: Array<{
          resource?: { attributes?: Array<{ key: string; value: OtlpValue }> };
          scopeSpans?: Array<{ spans?: Omit<CollectedSpan, "service" | "resource">[] }>;
        }>;
      };
      for (const resource of request.resourceSpans ?? []) {
        const service = attribute(resource.resource ?? {}, "service.name");
        for (const scope of resource.scopeSpans ?? [])
          for (const span of scope.spans ?? [])
            found.push({
              ...span,
              service: typeof service === "string" ? service : undefined,
              resource: resource.resource?.attributes ?? [],
            });
      }
    }
    return found;
  };

  return {
    endpoint,
    grpcEndpoint: `http://127.0.0.1:${grpcPort}`,
    spans,
    async waitForTrace(traceId, done, what, timeoutMs = 20_000) {
      let trace: CollectedSpan[] = [];
      await waitUntil(
        () => {
          trace = spans().filter((span) => span.traceId === traceId);
          return done(trace);
        },
        `${what} in the Collector's file`,
        timeoutMs,
        100,
      );
      return trace;
    },
    async stop() {
      await killGroup(child);
      rmSync(folder, { recursive: true, force: true });
    },
  };
}
