import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { type AddressInfo, createServer, connect as netConnect, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { Redis } from "ioredis";
import { killGroup, spawnGroup } from "../support/processes.ts";
import { token } from "../support/tokens.ts";
import { waitUntil } from "../support/wait.ts";
import { freePort, RUNTIMES, type RunningGateway, startGateway } from "./harness.ts";

/**
 * A Redis of this test's own: the failover turns it into a replica, which the shared one must never be.
 * `dir` receives the snapshot a primary writes for its new replica.
 */
async function startRedis(dir: string): Promise<{
  port: number;
  process: Subprocess<"ignore", "ignore", "ignore">;
  admin: Redis;
}> {
  const port = await freePort();
  const child = spawnGroup(
    [
      "redis-server",
      "--bind",
      "127.0.0.1",
      "--port",
      String(port),
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
    ],
    { stdin: "ignore", stdout: "ignore", stderr: "ignore" },
  );
  const admin = new Redis(port, "127.0.0.1", { retryStrategy: () => 50 });
  await waitUntil(async () => (await admin.ping().catch(() => "")) === "PONG", "redis-server to answer");
  return { port, process: child, admin };
}

/**
 * The primary's name as a client sees it (ElastiCache's primary endpoint): each new connection goes to
 * the current primary, while a connection made before a failover stays with the node it reached.
 */
function primaryEndpoint(target: () => number): Promise<Server> {
  const server = createServer((client) => {
    const upstream = netConnect(target(), "127.0.0.1");
    client.pipe(upstream).pipe(client);
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      a.on("error", () => b.destroy());
      a.on("close", () => b.destroy());
    }
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

describe.each(RUNTIMES)("Redis failover behind one name, on %s", (runtime) => {
  let nodes: Array<Awaited<ReturnType<typeof startRedis>>>;
  let primary: number;
  let endpoint: Server;
  let gateway: RunningGateway;
  let folder: string;
  const tenant = `failover-${runtime}-${Date.now()}`;

  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), "redis-failover-"));
    nodes = await Promise.all([startRedis(folder), startRedis(folder)]);
    primary = (nodes[0] as (typeof nodes)[0]).port;
    endpoint = await primaryEndpoint(() => primary);
    await writeFile(join(folder, "quotas.json"), JSON.stringify({ [tenant]: { dedupWindowSec: 600 } }));
    gateway = await startGateway(runtime, {
      KAFKA_BROKERS: "",
      REDIS_URL: `redis://127.0.0.1:${(endpoint.address() as AddressInfo).port}`,
      TENANT_QUOTAS: join(folder, "quotas.json"),
    });
  });
  afterAll(async () => {
    await gateway?.stop("SIGKILL");
    endpoint?.close();
    for (const node of nodes ?? []) {
      node.admin.disconnect();
      await killGroup(node.process);
    }
    await rm(folder, { recursive: true, force: true });
  });

  /** Posts one record with `id`; resolves with the ids the answer calls duplicates. */
  async function post(id: string): Promise<string[]> {
    const response = await fetch(`${gateway.url}/v1/events`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${await token(tenant, ["ingest"])}`,
        "content-type": "application/json",
      },
      body: JSON.stringify({ type: "click", id, data: { element: "b" } }),
    });
    expect(response.status).toBe(202);
    const body = (await response.json()) as { duplicates?: Array<{ id: string }> };
    return (body.duplicates ?? []).map((duplicate) => duplicate.id);
  }

  /** Whether a record id sent twice is recognised the second time: the shared store answers. */
  let attempt = 0;
  async function deduplicates(): Promise<boolean> {
    const id = `r${++attempt}`;
    await post(id);
    return (await post(id)).includes(id);
  }

  test("after the old primary turns replica, the gateway follows the name to the new one: deduplication works again", async () => {
    await waitUntil(deduplicates, "deduplication through the first primary");
    const [first, second] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
    // The failover: the second node is the primary now, the first one its replica, and the name moves.
    await first.admin.replicaof("127.0.0.1", second.port);
    primary = second.port;
    await waitUntil(deduplicates, "deduplication through the new primary", 15_000, 200);
    expect(await second.admin.exists(`rid:{${tenant}}:r${attempt}`)).toBe(1);
  });
});
