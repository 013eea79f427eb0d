/**
 * The node24 container target (deploy/Dockerfile --target node24) without a
 * Docker engine: the bundle run by Node 24 with deploy/node24's node_modules
 * (uWebSockets.js 20.57 for Node 24, @platformatic/kafka 2.x) in a Debian 13
 * tree made with debootstrap (scripts/install-tools), chrooted, against the
 * shared Kafka on loopback. The rest of the e2e suite runs on it with
 * EDGE_GATEWAY_E2E_RUNTIMES=node24 (README, "Choosing a runtime").
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, readlinkSync } from "node:fs";
import { connect } from "node:net";
import { pacedGc } from "../../loadtest/profiles/paced-gc.ts";
import { partitionHash } from "../../src/infra/kafka/sink-producer.ts";
import { DEBIAN_TREE, debianTreeProblem } from "../support/debian-tree.ts";
import { assertExactlyOnce, createTopic, readTopic, services } from "../support/kafka.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { waitUntil } from "../support/wait.ts";
import { type RunningGateway, startGateway, TestSocket, waitForLog } from "./harness.ts";

async function post(gateway: RunningGateway, path: string, body: unknown, scopes: string[]): Promise<number> {
  const response = await fetch(`${gateway.url}${path}`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${await token("acme", scopes)}`,
      "content-type": "application/json",
    },
    body: JSON.stringify(body),
  });
  await response.arrayBuffer();
  return response.status;
}

const clicks = (prefix: string, count: number, extra: Record<string, unknown> = {}) =>
  Array.from({ length: count }, (_, i) => ({
    type: "click",
    id: `${prefix}-${i}`,
    data: { element: `e${i}` },
    ...extra,
  }));

describe("the node24 target's gateway in a Debian 13 chroot", () => {
  const gateways: RunningGateway[] = [];
  let topic: string;
  let env: Record<string, string>;

  beforeAll(async () => {
    const problem = debianTreeProblem();
    if (problem !== undefined) throw new Error(`${problem}: run scripts/install-tools as root`);
    topic = await createTopic("node24-events");
    env = {
      KAFKA_BROKERS: services().brokers,
      KAFKA_TOPIC: topic,
      KAFKA_FANOUT_TOPIC: await createTopic("node24-fanout"),
      JWT_SECRET: TEST_SECRET,
    };
    gateways.push(...(await Promise.all([startGateway("node24", env), startGateway("node24", env)])));
    await Promise.all(gateways.map((gateway) => waitForLog(gateway, "fan-out consumer reading")));
  });
  afterAll(async () => {
    await Promise.all(gateways.map((gateway) => gateway.stop("SIGKILL")));
  });

  test("runs Node 24 on Debian 13 with the native uWebSockets.js", async () => {
    const [gateway] = gateways as [RunningGateway];
    const pid = gateway.process.pid;
    expect(readlinkSync(`/proc/${pid}/root`)).toBe(DEBIAN_TREE);
    expect(readFileSync(`/proc/${pid}/root/etc/debian_version`, "utf8")).toMatch(/^13\./);
    expect(gateway.logs.find((entry) => entry.msg === "listening")?.engine).toBe("uws-native");
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    expect(metrics).toMatch(/^nodejs_version_info\{[^}]*major="24"/m);
    expect(metrics).toContain('gateway_engine_info{engine="uws-native"} 1');
    // HEAD through this uWebSockets.js: the GET's length, no body.
    const head = await fetch(`${gateway.url}/health/live`, { method: "HEAD" });
    const get = await fetch(`${gateway.url}/health/live`);
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
    expect(head.headers.get("content-length")).toBe(String((await get.arrayBuffer()).byteLength));
  });

  test("a request head under 16 KiB that arrives in two writes is answered; over 16 KiB it is a 431 (uWebSockets.js 20.57 buffers a head cut across reads up to UWS_HTTP_MAX_HEADERS_SIZE, 4 KiB unless set)", async () => {
    const [gateway] = gateways as [RunningGateway];
    const answers: Record<string, string> = {};
    for (const padding of [10_000, 20_000]) {
      const head = `GET /health/live HTTP/1.1\r\nHost: x\r\nX-Padding: ${"a".repeat(padding)}\r\n\r\n`;
      const socket = connect(gateway.port, "127.0.0.1");
      let received = "";
      socket.setEncoding("latin1");
      socket.on("data", (chunk: string) => {
        received += chunk;
      });
      socket.on("error", () => {});
      const closed = new Promise((resolve) => socket.on("close", resolve));
      socket.write(head.slice(0, 2000));
      await Bun.sleep(50);
      socket.write(head.slice(2000));
      await Promise.race([
        closed,
        waitUntil(() => /^HTTP\/1\.1 \d{3}/.test(received), "an answer").catch(() => {}),
      ]);
      socket.destroy();
      answers[`${padding} bytes`] = received.match(/^HTTP\/1\.1 (\d{3})/)?.[1] ?? "no answer";
    }
    expect(answers).toEqual({ "10000 bytes": "200", "20000 bytes": "431" });
  });

  test("events ingested in batches and one by one are in Kafka once each, with headers", async () => {
    const [gateway] = gateways as [RunningGateway];
    const batches = Array.from({ length: 10 }, (_, b) => clicks(`batch-${b}`, 100, { key: `device-${b}` }));
    const singles = clicks("single", 20);
    const statuses = await Promise.all([
      ...batches.map((batch) => post(gateway, "/v1/events", batch, ["ingest"])),
      ...singles.map((single) => post(gateway, "/v1/events", single, ["ingest"])),
    ]);
    expect(statuses).toEqual(Array(statuses.length).fill(202));
    const expected = [...batches.flat(), ...singles].map((record) => record.id);
    const messages = await readTopic(topic, expected.length);
    const ids = messages.map((message) => (JSON.parse(message.value) as { id: string }).id);
    expect(assertExactlyOnce(ids, expected)).toEqual({ missing: [], duplicates: [], unexpected: [] });
    for (const message of messages) {
      expect(message.headers.get("tenant")).toBe("acme");
      expect(message.headers.get("type")).toBe("click");
    }
  }, 60_000);

  test("writes one after another to a partition, then to it and another in one request: each record once (2.x counts a client message once, our batches hold many records)", async () => {
    const sequencesTopic = await createTopic("node24-sequences");
    const gateway = await startGateway("node24", { ...env, KAFKA_TOPIC: sequencesTopic });
    gateways.push(gateway);
    // Two keys on different partitions of the topic's 3.
    const [first, second] = ["k-0", "k-1", "k-2", "k-3"].filter(
      (key, index, keys) =>
        index === 0 || partitionHash.of(key) % 3 !== partitionHash.of(keys[0] as string) % 3,
    ) as [string, string];
    const requests = [
      clicks("one", 10, { key: first }),
      clicks("two", 10, { key: first }),
      [...clicks("three", 10, { key: first }), ...clicks("four", 10, { key: second })],
    ];
    for (const records of requests) expect(await post(gateway, "/v1/events", records, ["ingest"])).toBe(202);
    const ids = (await readTopic(sequencesTopic, 40)).map(
      (message) => (JSON.parse(message.value) as { id: string }).id,
    );
    expect(
      assertExactlyOnce(
        ids,
        requests.flat().map((record) => record.id),
      ),
    ).toEqual({ missing: [], duplicates: [], unexpected: [] });
  }, 30_000);

  test("events ingested on one instance reach WebSocket subscribers on the other, in order", async () => {
    const [first, second] = gateways as [RunningGateway, RunningGateway];
    const subscribers = await Promise.all(
      [0, 1, 2].map(async () => {
        const socket = new TestSocket(`${second.wsUrl}?token=${await token("acme", ["subscribe"])}`);
        await socket.opened();
        await socket.next((frame) => frame.type === "connected");
        socket.send({ type: "subscribe", channel: "orders" });
        expect(
          (await socket.next((frame) => frame.type === "subscribed" || frame.type === "error")).type,
        ).toBe("subscribed");
        return socket;
      }),
    );
    expect(
      await post(first, "/v1/events", clicks("fanout", 50, { channel: "orders" }), ["ingest", "publish"]),
    ).toBe(202);
    for (const socket of subscribers) {
      const seen: unknown[] = [];
      while (seen.length < 50) seen.push((await socket.next((frame) => frame.type === "event", 10_000)).data);
      expect(seen).toEqual(Array.from({ length: 50 }, (_, i) => ({ element: `e${i}` })));
      socket.close();
    }
  }, 30_000);

  test("100-event batches at a steady rate: what a scavenge finds alive is not promoted a full collection's worth a second (V8's allocation-site pretenuring off, src/lifecycle/v8-heap.ts)", async () => {
    const result = await pacedGc({ runtime: "node24", rate: 400, brokers: services().brokers });
    // Every figure in the failure's output: a flake on busy cores tells itself apart from the collector.
    const figures = JSON.stringify(result);
    expect({ non2xx: result.paced.non2xx, unfinished: result.paced.unfinished, figures }).toMatchObject({
      non2xx: 0,
      unfinished: 0,
    });
    // With pretenuring on, Node 24 promoted 61 MiB in these 8 s (4 full collections; 108 MiB at 600 a
    // second); off, 0.3 MiB. A light load: the e2e lane beside this one shares the cores.
    expect({ promotedUnder16MiB: result.promoted < 16 * 2 ** 20, figures }).toMatchObject({
      promotedUnder16MiB: true,
    });
  }, 90_000);

  test("SIGTERM: sockets get 1001, records accepted with ack=none are all flushed, exit 0", async () => {
    const drainTopic = await createTopic("node24-drain");
    const gateway = await startGateway("node24", { ...env, KAFKA_TOPIC: drainTopic });
    gateways.push(gateway);
    const socket = new TestSocket(`${gateway.wsUrl}?token=${await token("acme", ["subscribe"])}`);
    await socket.opened();
    await socket.next((frame) => frame.type === "connected");
    const records = clicks("drain", 500);
    expect(await post(gateway, "/v1/events?ack=none", records, ["ingest"])).toBe(202);
    gateway.process.kill("SIGTERM");
    expect((await socket.closed).code).toBe(1001);
    expect(await gateway.process.exited).toBe(0);
    const ids = (await readTopic(drainTopic, records.length)).map(
      (message) => (JSON.parse(message.value) as { id: string }).id,
    );
    expect(
      assertExactlyOnce(
        ids,
        records.map((record) => record.id),
      ),
    ).toEqual({
      missing: [],
      duplicates: [],
      unexpected: [],
    });
  }, 30_000);
});
