import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { waitUntil } from "../support/wait.ts";
import {
  freePort,
  ingestClick,
  RUNTIMES,
  type RunningGateway,
  runUntilExit,
  startGateway,
  TestSocket,
  waitForLog,
} from "./harness.ts";

/** What `promtool check metrics` says of a page: its exit code and its complaints. */
async function promtoolCheck(page: string): Promise<{ exit: number; problems: string }> {
  const promtool = Bun.spawn(["promtool", "check", "metrics"], {
    stdin: new Blob([page]),
    stdout: "pipe",
    stderr: "pipe",
  });
  const problems =
    (await new Response(promtool.stdout).text()) + (await new Response(promtool.stderr).text());
  return { exit: await promtool.exited, problems };
}

describe.each(RUNTIMES)("operations on %s", (runtime) => {
  let gateway: RunningGateway;

  beforeAll(async () => {
    gateway = await startGateway(runtime, { JWT_SECRET: TEST_SECRET });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
  });

  test("GET /health answers 200 ok while serving", async () => {
    const response = await fetch(`${gateway.url}/health`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "ok" });
  });

  test("GET /health/live answers 200", async () => {
    const response = await fetch(`${gateway.url}/health/live`);
    expect(response.status).toBe(200);
  });

  test("GET /metrics exposes gateway and process metrics that promtool accepts", async () => {
    await fetch(`${gateway.url}/health`);
    const response = await fetch(`${gateway.url}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/plain");
    const text = await response.text();
    expect(text).toContain(`gateway_info{runtime="${runtime === "bun" ? "bun" : "node-uws"}"`);
    expect(text).toContain('gateway_http_requests_total{route="/health",method="GET",status="200"}');
    expect(text).toContain("process_resident_memory_bytes");
    expect(await promtoolCheck(text)).toEqual({ exit: 0, problems: "" });
  });

  test("GET /metrics answers the Prometheus text format to a scraper asking for OpenMetrics", async () => {
    // docs/metrics.md: one format for every Accept (Prometheus asks for OpenMetrics first, takes this too).
    const response = await fetch(`${gateway.url}/metrics`, {
      headers: { accept: "application/openmetrics-text;version=1.0.0" },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
    const text = await response.text();
    expect(text).toMatch(/^gateway_http_requests_total\{/m);
    expect(text).not.toContain("# EOF");
    expect(await promtoolCheck(text)).toEqual({ exit: 0, problems: "" });
  });

  test("an idle instance's event-loop lag reads as its delay, not as the sampling period", async () => {
    // Each scrape resets the histogram: the second one holds only the idle second between them.
    await fetch(`${gateway.url}/metrics`);
    await Bun.sleep(1500);
    const text = await (await fetch(`${gateway.url}/metrics`)).text();
    const p50 = Number(/^nodejs_eventloop_lag_p50_seconds (\S+)$/m.exec(text)?.[1]);
    // Node's histogram counts the period it samples on in every reading; the 200 ms alert assumes 10 ms.
    // A period counted in is in every reading, so the median shows it. Not the p99: on Bun (a sample
    // every 100 ms, 15 in the idle second and a half) that is the one latest wake, 69 ms on a loaded machine.
    expect(p50).toBeLessThan(0.08);
  });

  test("unknown route answers a JSON 404 with a stable code", async () => {
    const response = await fetch(`${gateway.url}/nope`);
    expect(response.status).toBe(404);
    expect(((await response.json()) as { error: string }).error).toBe("not_found");
  });

  test("an upload the client abandons does not stay in flight", async () => {
    const socket = await Bun.connect({ hostname: "127.0.0.1", port: gateway.port, socket: { data() {} } });
    socket.write(
      `POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${await token("acme", ["ingest"])}\r\n` +
        "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n[{",
    );
    // The scrape itself is one request in flight.
    const inFlight = async () =>
      Number(
        /^gateway_http_requests_in_flight (\S+)$/m.exec(
          await (await fetch(`${gateway.url}/metrics`)).text(),
        )?.[1],
      );
    await waitUntil(async () => (await inFlight()) === 2, "the upload in flight");
    socket.end();
    await waitUntil(async () => (await inFlight()) === 1, "the abandoned upload no longer in flight");
  });

  test("wrong method answers 405 with Allow", async () => {
    const response = await fetch(`${gateway.url}/health`, { method: "POST", body: "x" });
    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe("GET, HEAD");
  });
});

describe.each(RUNTIMES)("lifecycle on %s", (runtime) => {
  // Each test ends its gateway itself (that is what it tests); one that fails midway must not leave it running.
  const started: RunningGateway[] = [];
  const startForTest = async (env: Record<string, string>): Promise<RunningGateway> => {
    const gateway = await startGateway(runtime, env);
    started.push(gateway);
    return gateway;
  };
  afterEach(async () => {
    await Promise.all(started.splice(0).map((gateway) => gateway.stop("SIGKILL")));
  });

  test("a second gateway on the same embedded log folder exits 1 naming LOCAL_LOG_DIR; once the first is killed, a new one takes the folder at once", async () => {
    const folder = mkdtempSync(join(tmpdir(), "operations-shared-"));
    const env = { KAFKA_BROKERS: "", LOCAL_LOG_DIR: folder, JWT_SECRET: TEST_SECRET };
    const first = await startForTest(env);
    const second = await runUntilExit(runtime, { ...env, HOST: "127.0.0.1", PORT: "0" });
    expect(second.code).toBe(1);
    const fatal = second.stdout
      .split("\n")
      .filter((line) => line.includes('"level":"fatal"'))
      .map((line) => JSON.parse(line) as { msg: string; variables?: string[] });
    expect(fatal).toHaveLength(1);
    expect(fatal[0]?.msg).toStartWith("LOCAL_LOG_DIR: cannot open: ");
    expect(fatal[0]?.msg).toContain(`pid ${first.process.pid}`);
    expect(fatal[0]?.variables).toEqual(["LOCAL_LOG_DIR"]);
    // WORKERS > 1 too: its workers write beneath the folder (worker-<n>/), beside the first gateway's log.
    const workers = await runUntilExit(
      runtime,
      { ...env, HOST: "127.0.0.1", PORT: String(await freePort()), WORKERS: "2" },
      10_000,
    );
    expect(workers.code).toBe(1);
    expect(workers.stdout).toContain(`"msg":"LOCAL_LOG_DIR: cannot open: `);
    // The first is untouched and still takes records.
    expect((await ingestClick(first)).status).toBe(202);

    // A crash leaves its lock behind; the pid is gone, so the next start does not wait for it to age.
    await first.stop("SIGKILL");
    const startedAt = Date.now();
    const next = await startForTest(env);
    expect(Date.now() - startedAt).toBeLessThan(5000);
    expect((await ingestClick(next)).status).toBe(202);
    await next.stop("SIGKILL");
    rmSync(folder, { recursive: true, force: true });
  });

  test("SIGTERM: /health turns 503 during the drain delay, sockets get reconnect + 1001, exit 0 in time", async () => {
    const gateway = await startForTest({
      DRAIN_DELAY_MS: "1500",
      DRAIN_TIMEOUT_MS: "6000",
      JWT_SECRET: TEST_SECRET,
    });
    const client = new TestSocket(`${gateway.wsUrl}?token=${await token("acme", ["subscribe"])}`);
    await client.opened();
    await client.next((frame) => frame.type === "connected");
    expect((await fetch(`${gateway.url}/health`)).status).toBe(200);

    const signalledAt = Date.now();
    gateway.process.kill("SIGTERM");
    await waitUntil(async () => (await fetch(`${gateway.url}/health`)).status === 503, "/health to turn 503");
    const during = await fetch(`${gateway.url}/health`);
    expect(during.status).toBe(503);
    expect(((await during.json()) as { reasons: string[] }).reasons).toContain("draining");
    expect((await fetch(`${gateway.url}/health/live`)).status).toBe(200);

    const reconnect = await client.next((frame) => frame.type === "reconnect", 5000);
    expect(typeof reconnect.afterMs).toBe("number");
    expect((await client.closed).code).toBe(1001);
    // Exit 0: the drain finished before DRAIN_TIMEOUT_MS (past it, the exit code is 1). The lower
    // bound is the drain delay being honoured, which a slow machine can only make longer.
    const code = await gateway.process.exited;
    expect(code).toBe(0);
    expect(Date.now() - signalledAt).toBeGreaterThanOrEqual(1400);
  });

  test("the SPEC's settings set alone as a test would: MAX_BODY_BYTES=100 answers 413 past it, DRAIN_TIMEOUT_MS=2000 drains to exit 0 within it", async () => {
    const gateway = await startForTest({
      JWT_SECRET: TEST_SECRET,
      MAX_BODY_BYTES: "100",
      // Empty is unset: the harness's own DRAIN_DELAY_MS is not the default this is about.
      DRAIN_DELAY_MS: "",
      // The embedded log: the second after the delay is the drain's own, not a loaded broker's shutdown.
      KAFKA_BROKERS: "",
      DRAIN_TIMEOUT_MS: "2000",
    });
    const authorization = `Bearer ${await token("acme", ["ingest"])}`;
    const post = (body: string) =>
      fetch(`${gateway.url}/v1/events`, {
        method: "POST",
        headers: { authorization, "content-type": "application/json" },
        body,
      });
    const small = JSON.stringify({ type: "click", data: { element: "a" } });
    expect((await post(small)).status).toBe(202);
    expect((await post(JSON.stringify({ type: "click", data: { element: "a".repeat(100) } }))).status).toBe(
      413,
    );
    const signalledAt = Date.now();
    gateway.process.kill("SIGTERM");
    // The delay, unset, took half the timeout: /health turns 503 (once the signal is handled), then the
    // listener closes. Exit 0 is the drain ending before DRAIN_TIMEOUT_MS (past it, the code is 1); the
    // lower bound is the delay being honoured, which a slow machine can only make longer.
    // Refused: a loaded machine got to ask only after the delay, which the bound below still holds.
    await waitUntil(
      async () =>
        (await fetch(`${gateway.url}/health`).then(
          (response) => response.status,
          () => 503,
        )) === 503,
      "/health 503 during the drain delay",
    );
    expect(await gateway.process.exited).toBe(0);
    expect(Date.now() - signalledAt).toBeGreaterThanOrEqual(900);
  });

  test("after the drain delay new connections are refused", async () => {
    const gateway = await startForTest({ DRAIN_DELAY_MS: "300", DRAIN_TIMEOUT_MS: "5000" });
    const client = new TestSocket(gateway.wsUrl);
    await client.opened();
    gateway.process.kill("SIGTERM");
    await client.closed;
    await Bun.sleep(50);
    const refused = await fetch(`${gateway.url}/health`).then(
      () => false,
      () => true,
    );
    expect(refused).toBe(true);
    expect(await gateway.process.exited).toBe(0);
  });

  test("SIGTERM: a keep-alive connection gets Connection: close with its next answer and is closed after it, before the listener closes", async () => {
    const gateway = await startForTest({ DRAIN_DELAY_MS: "3000", DRAIN_TIMEOUT_MS: "8000" });
    const received: string[] = [];
    let ended = false;
    const socket = connect(gateway.port, "127.0.0.1");
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => void received.push(chunk));
    socket.on("close", () => {
      ended = true;
    });
    socket.on("error", () => {});
    const ask = () => socket.write("GET /health/live HTTP/1.1\r\nHost: gateway\r\n\r\n");
    const answers = () => received.join("").split("HTTP/1.1 ").slice(1);
    await new Promise((resolve) => socket.once("connect", resolve));
    ask();
    await waitUntil(() => answers().length === 1, "the answer before the drain");
    expect(answers()[0]?.toLowerCase()).not.toContain("connection: close");

    gateway.process.kill("SIGTERM");
    await waitForLog(gateway, "drain started");
    ask();
    await waitUntil(() => answers().length === 2 && ended, "the answer in the drain, then the close");
    // Within the drain delay: the connection ended because of its answer, not because the listener closed.
    expect(gateway.logs.some((entry) => entry.step === "stop listening")).toBe(false);
    expect(answers()[1]).toStartWith("200");
    expect(answers()[1]?.toLowerCase()).toContain("connection: close");
    // A HEAD answer in the drain says so too, with GET's Content-Length (uWS's end() would say 0).
    const head = connect(gateway.port, "127.0.0.1");
    head.setEncoding("latin1");
    let headAnswer = "";
    head.on("data", (chunk: string) => {
      headAnswer += chunk;
    });
    head.on("error", () => {});
    head.write("HEAD /health/live HTTP/1.1\r\nHost: gateway\r\n\r\n");
    await waitUntil(() => headAnswer.includes("\r\n\r\n"), "the HEAD answer in the drain");
    head.destroy();
    expect(headAnswer.toLowerCase()).toContain("\r\nconnection: close");
    expect(headAnswer.toLowerCase()).toContain("\r\ncontent-length: 15\r\n");
    expect(await gateway.process.exited).toBe(0);
  });

  test("a second signal exits at once", async () => {
    const gateway = await startForTest({ DRAIN_DELAY_MS: "20000", DRAIN_TIMEOUT_MS: "30000" });
    const started = Date.now();
    gateway.process.kill("SIGTERM");
    await waitForLog(gateway, "drain started");
    gateway.process.kill("SIGINT");
    expect(await gateway.process.exited).toBe(1);
    // Timing is the claim here: "at once" against a 20 s drain delay, so the bound is generous (10 s).
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  test("a bad setting exits 1 naming the variable", async () => {
    const { code, stderr } = await runUntilExit(runtime, { PORT: "eighty", DRAIN_TIMEOUT_MS: "-5" });
    expect(code).toBe(1);
    expect(stderr).toContain("PORT");
    expect(stderr).toContain("DRAIN_TIMEOUT_MS");
  });

  test("a bad setting is also one fatal JSON line on stdout, naming each variable", async () => {
    const { code, stdout, stderr } = await runUntilExit(runtime, {
      JWT_SECRET: TEST_SECRET,
      PORT: "eighty",
      DRAIN_TIMEOUT_MS: "-5",
      KAFKA_BROKERS: "x:0",
    });
    expect(code).toBe(1);
    expect(stderr).toStartWith("invalid configuration:\n  - ");
    const lines = stdout.split("\n").filter((line) => line.trim() !== "");
    expect(lines).toHaveLength(1);
    const fatal = JSON.parse(lines[0] as string) as Record<string, unknown>;
    expect(fatal.level).toBe("fatal");
    expect(fatal.msg).toBe("invalid configuration: PORT, DRAIN_TIMEOUT_MS, KAFKA_BROKERS");
    expect(fatal.variables).toEqual(["PORT", "DRAIN_TIMEOUT_MS", "KAFKA_BROKERS"]);
    const problems = fatal.problems as string[];
    for (const name of ["PORT", "DRAIN_TIMEOUT_MS", "KAFKA_BROKERS"])
      expect(problems.some((problem) => problem.startsWith(`${name}: `))).toBe(true);
  });

  test("a SCHEMAS or TENANT_QUOTAS source that cannot be loaded exits 1 naming the variable, its URL's password and query masked on both outputs", async () => {
    // Nothing listens there: refused at once. The password and a presigned URL's signature must not be printed.
    const source = `http://reader:s3cr3t-pw@127.0.0.1:${await freePort()}/source.json?X-Amz-Signature=sig-0123456789`;
    const masked = source.replace("s3cr3t-pw", "***").replace(/\?.*$/, "?***");
    for (const setting of ["SCHEMAS", "TENANT_QUOTAS"]) {
      const { code, stdout, stderr } = await runUntilExit(runtime, {
        JWT_SECRET: TEST_SECRET,
        PORT: "0",
        [setting]: source,
      });
      expect(code).toBe(1);
      // On stderr too, as a bad value is: it printed nothing there.
      expect(stderr).toStartWith(`${setting}: cannot load: GET ${masked}`);
      for (const secret of ["s3cr3t-pw", "sig-0123456789"]) {
        expect(stderr).not.toContain(secret);
        expect(stdout).not.toContain(secret);
      }
      // One fatal line, named like a bad value (msg and variables), the cause's text once.
      const fatal = stdout
        .split("\n")
        .filter((line) => line.includes('"level":"fatal"'))
        .map((line) => JSON.parse(line) as { msg: string; variables?: string[]; err?: { message: string } });
      expect(fatal).toHaveLength(1);
      expect(fatal[0]?.msg).toStartWith(`${setting}: cannot load: GET ${masked}`);
      expect(fatal[0]?.variables).toEqual([setting]);
      expect(fatal[0]?.msg.split(masked)).toHaveLength(2);
      expect(fatal[0]?.err?.message).toContain(masked);
    }
  });

  test("an embedded log folder that cannot be opened exits 1 naming LOCAL_LOG_DIR", async () => {
    // A regular file where a folder should be: refused even to root, unlike permissions. And a folder
    // under /proc, where mkdir answers ENOENT under a parent that exists (Node's recursive mkdir looped forever).
    const folder = mkdtempSync(join(tmpdir(), "operations-log-"));
    const inTheWay = join(folder, "file");
    writeFileSync(inTheWay, "");
    const unopenable = [join(inTheWay, "log"), "/proc/edge-gateway-log/events"];
    const runs = await Promise.all(
      unopenable.map((dir) =>
        runUntilExit(runtime, { JWT_SECRET: TEST_SECRET, PORT: "0", KAFKA_BROKERS: "", LOCAL_LOG_DIR: dir }),
      ),
    );
    rmSync(folder, { recursive: true, force: true });
    for (const [i, { code, stdout, stderr }] of runs.entries()) {
      expect(code).toBe(1);
      expect(stderr).toStartWith("LOCAL_LOG_DIR: cannot open: ");
      const fatal = stdout
        .split("\n")
        .filter((line) => line.includes('"level":"fatal"'))
        .map((line) => JSON.parse(line) as { msg: string; variables?: string[] });
      expect(fatal).toHaveLength(1);
      expect(fatal[0]?.msg).toStartWith("LOCAL_LOG_DIR: cannot open: ");
      expect(fatal[0]?.msg).toContain(i === 0 ? unopenable[0] : "/proc/edge-gateway-log");
      expect(fatal[0]?.variables).toEqual(["LOCAL_LOG_DIR"]);
    }
  });
});

describe.each(RUNTIMES)("Kafka never reached on %s", (runtime) => {
  test("/health is 503 kafka_connecting from the start, long before KAFKA_UNHEALTHY_AFTER_MS; advisory with KAFKA_AFFECTS_HEALTH=false", async () => {
    const closed = `127.0.0.1:${await freePort()}`;
    const env = { KAFKA_BROKERS: closed, REDIS_URL: "", KAFKA_UNHEALTHY_AFTER_MS: "60000" };
    const [gated, advisory] = await Promise.all([
      startGateway(runtime, env),
      startGateway(runtime, { ...env, KAFKA_AFFECTS_HEALTH: "false" }),
    ]);
    try {
      const unready = await fetch(`${gated.url}/health`);
      expect(unready.status).toBe(503);
      expect(await unready.json()).toEqual({ status: "unavailable", reasons: ["kafka_connecting"] });
      // Not reached: the metric says so at once, not after the 60 s grace.
      expect(await (await fetch(`${gated.url}/metrics`)).text()).toMatch(/^gateway_kafka_up 0$/m);
      const ready = await fetch(`${advisory.url}/health`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ status: "ok", degraded: ["kafka_connecting"] });
    } finally {
      await Promise.all([gated.stop("SIGKILL"), advisory.stop("SIGKILL")]);
    }
  }, 40_000);
});

/** A keep-alive connection to `port` whose GET /health was answered 200, left open. */
function answeredConnection(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let received = "";
    socket.setEncoding("utf8");
    socket.on("error", reject);
    socket.on("data", (chunk: string) => {
      received += chunk;
      if (received.startsWith("HTTP/1.1 200 ")) resolve(socket);
      else if (received.length > 12) reject(new Error(`answered ${JSON.stringify(received.slice(0, 40))}`));
    });
    socket.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  });
}

/** Client port → pid of the process holding the server side of each established connection on `port` (ss). */
function serverSideOwners(port: number): Map<number, number> {
  const listing = Bun.spawnSync([
    "ss",
    "-Htnp",
    "state",
    "established",
    `( sport = :${port} )`,
  ]).stdout.toString();
  const owners = new Map<number, number>();
  for (const line of listing.split("\n")) {
    const peer = /\s127\.0\.0\.1:(\d+)\s/.exec(line.replace(/127\.0\.0\.1:\d+/, ""));
    const pid = /pid=(\d+)/.exec(line);
    if (peer && pid) owners.set(Number(peer[1]), Number(pid[1]));
  }
  return owners;
}

describe.each(RUNTIMES)("WORKERS on %s", (runtime) => {
  test("two workers share the port, each answers connections (the kernel says which holds each), and SIGTERM drains both and exits 0", async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const gateway = await startGateway(runtime, {
      WORKERS: "2",
      PORT: String(port),
      LOCAL_LOG_DIR: `/tmp/workers-${port}`,
    });
    await waitUntil(
      () => gateway.logs.filter((entry) => entry.msg === "listening").length === 2,
      "both workers listening",
    );
    const workerPids = gateway.logs
      .filter((entry) => entry.msg === "listening")
      .map((entry) => entry.pid as number);
    // Twenty connections, each answered; the kernel says which process holds each one's server side.
    const connections = await Promise.all(Array.from({ length: 20 }, () => answeredConnection(port)));
    const owners = serverSideOwners(port);
    const answeredBy = new Set(connections.map((connection) => owners.get(connection.localPort as number)));
    for (const connection of connections) connection.destroy();
    expect([...answeredBy].sort()).toEqual([...workerPids].sort());
    expect(gateway.logs.some((entry) => entry.msg === "supervising workers")).toBe(true);
    expect(await gateway.stop("SIGTERM")).toBe(0);
  });
});
