import { expect, test } from "bun:test";
import type { Principal } from "../../../src/domain/principal.ts";
import { ingestRoute } from "../../../src/features/ingest/route.ts";
import type { HttpRequest } from "../../../src/ports/transport.ts";
import { ingestDependencies, ingestOptions } from "../../support/ingest-options.ts";

const principal: Principal = {
  subject: "s",
  tenant: "acme",
  scopes: new Set(["ingest"]),
  channels: undefined,
  expiresAt: Date.now() + 60_000,
};

test("every record the route queues names the request's tenant, its dead letters too: all count in its share of the producer queue", async () => {
  const queued: Array<{ topic: string | undefined; tenant: string | undefined }> = [];
  const route = ingestRoute(
    ingestOptions({ dlqTopic: "dlq" }),
    ingestDependencies({
      authenticate: async () => principal,
      queue: {
        maxRecordBytes: 1_000_000,
        fits: () => true,
        enqueue: async (messages, _until, tenant) => {
          queued.push({ topic: messages[0]?.topic, tenant });
        },
      },
    }),
  );
  // One record written, one rejected (no type): the rejected one goes to the dead-letter topic.
  const body = [{ type: "click", data: {} }, { data: {} }];
  const request: HttpRequest = {
    method: "POST",
    path: "/v1/events",
    query: new URLSearchParams(),
    header: (name) => (name === "content-type" ? "application/json" : undefined),
    headerNames: () => ["content-type"],
    remoteAddress: "127.0.0.1",
    body: async () => Buffer.from(JSON.stringify(body)),
  };
  expect((await route.handler(request, {})).status).toBe(202);
  expect(queued).toEqual([
    { topic: "dlq", tenant: "acme" },
    { topic: "events", tenant: "acme" },
  ]);
});
