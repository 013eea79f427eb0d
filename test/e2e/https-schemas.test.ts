import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server } from "bun";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { waitUntil } from "../support/wait.ts";
import { freePort, RUNTIMES, runUntilExit, startGateway } from "./harness.ts";

/**
 * SCHEMAS from an https URL: a local TLS server with a self-signed
 * certificate, which the gateway trusts only through NODE_EXTRA_CA_CERTS
 * (how an internal CA is added in production).
 */
const folder = mkdtempSync(join(tmpdir(), "https-schemas-"));
const certificate = join(folder, "cert.pem");
const key = join(folder, "key.pem");
const SCHEMA = "https://json-schema.org/draft/2020-12/schema";
const schemas = { signup: { $schema: SCHEMA, type: "object", required: ["email"] } };
let server: Server<undefined>;
const requests: Array<{ ifNoneMatch: string | null }> = [];
/** Set: the server answers every request with this status (a source that is down). */
let failWith: number | undefined;

/** A body that never ends (64 KiB of spaces at a time, for as long as they are read): a runaway source. */
function endless(aborted: AbortSignal): Response {
  const chunk = new Uint8Array(64 * 1024).fill(0x20);
  return new Response(
    new ReadableStream({
      type: "direct",
      async pull(controller) {
        while (!aborted.aborted) {
          controller.write(chunk);
          await controller.flush();
          await Bun.sleep(1);
        }
      },
    }),
  );
}

beforeAll(() => {
  const made = Bun.spawnSync([
    "openssl",
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "1",
    "-subj",
    "/CN=127.0.0.1",
    "-addext",
    "subjectAltName=IP:127.0.0.1",
    "-keyout",
    key,
    "-out",
    certificate,
  ]);
  if (made.exitCode !== 0) throw new Error(`openssl: ${made.stderr.toString()}`);
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: readFileSync(certificate, "utf8"), key: readFileSync(key, "utf8") },
    fetch(request) {
      if (new URL(request.url).pathname === "/endless.json") return endless(request.signal);
      const ifNoneMatch = request.headers.get("if-none-match");
      requests.push({ ifNoneMatch });
      if (
        new URL(request.url).pathname === "/private.json" &&
        request.headers.get("authorization") !== `Basic ${btoa("reader:p@ss:word")}`
      )
        return new Response("who are you?", { status: 401, headers: { "www-authenticate": "Basic" } });
      if (failWith !== undefined) return new Response("unavailable", { status: failWith });
      if (ifNoneMatch === '"v1"') return new Response(null, { status: 304 });
      return Response.json(schemas, { headers: { etag: '"v1"' } });
    },
  });
});
afterAll(() => {
  server.stop(true);
  rmSync(folder, { recursive: true, force: true });
});

const source = () => `https://127.0.0.1:${server.port}/schemas.json`;

describe.each(RUNTIMES)("SCHEMAS from an https URL on %s", (runtime) => {
  test("with the CA in NODE_EXTRA_CA_CERTS: its types are validated, and a refresh is a conditional GET answered 304", async () => {
    const gateway = await startGateway(runtime, {
      SCHEMAS: source(),
      SCHEMAS_REFRESH_MS: "1000",
      NODE_EXTRA_CA_CERTS: certificate,
      KAFKA_BROKERS: "",
      REDIS_URL: "",
      LOCAL_LOG_DIR: join(folder, `log-${runtime}`),
      JWT_SECRET: TEST_SECRET,
    });
    try {
      const post = async (record: object) =>
        (
          await fetch(`${gateway.url}/v1/events`, {
            method: "POST",
            headers: {
              authorization: `Bearer ${await token("acme", ["ingest"])}`,
              "content-type": "application/json",
            },
            body: JSON.stringify(record),
          })
        ).status;
      expect(await post({ type: "signup", data: { email: "a@example.com" } })).toBe(202);
      expect(await post({ type: "signup", data: { name: "no email" } })).toBe(422);
      const before = requests.length;
      await waitUntil(
        () => requests.slice(before).some((request) => request.ifNoneMatch === '"v1"'),
        "a refresh with If-None-Match",
      );
    } finally {
      await gateway.stop("SIGKILL");
    }
  });

  test("a URL with user:password@ is read with them as Basic credentials, and the password is not logged", async () => {
    const withCredentials = `https://reader:p%40ss%3Aword@127.0.0.1:${server.port}/private.json`;
    const gateway = await startGateway(runtime, {
      SCHEMAS: withCredentials,
      NODE_EXTRA_CA_CERTS: certificate,
      KAFKA_BROKERS: "",
      REDIS_URL: "",
      LOCAL_LOG_DIR: join(folder, `credentials-${runtime}`),
      JWT_SECRET: TEST_SECRET,
    });
    try {
      const response = await fetch(`${gateway.url}/v1/events`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${await token("acme", ["ingest"])}`,
          "content-type": "application/json",
        },
        body: JSON.stringify({ type: "signup", data: { email: "a@example.com" } }),
      });
      expect(response.status).toBe(202);
      const loaded = gateway.logs.find((line) => line.msg === "schemas loaded");
      expect(loaded?.source).toBe(`https://reader:***@127.0.0.1:${server.port}/private.json`);
      expect(JSON.stringify(gateway.logs)).not.toContain("p%40ss");
    } finally {
      await gateway.stop("SIGKILL");
    }
  });

  test("a source that keeps failing is counted at each refresh but logged once, and its recovery once", async () => {
    const gateway = await startGateway(runtime, {
      SCHEMAS: source(),
      SCHEMAS_REFRESH_MS: "1000",
      NODE_EXTRA_CA_CERTS: certificate,
      KAFKA_BROKERS: "",
      REDIS_URL: "",
      LOCAL_LOG_DIR: join(folder, `failing-${runtime}`),
      JWT_SECRET: TEST_SECRET,
    });
    const failuresCounted = async () => {
      const text = await (await fetch(`${gateway.url}/metrics`)).text();
      return Number(/^gateway_schema_refresh_failures_total (\S+)$/m.exec(text)?.[1]);
    };
    const lines = (msg: string) => gateway.logs.filter((line) => line.msg === msg);
    try {
      failWith = 503;
      await waitUntil(async () => (await failuresCounted()) >= 4, "four failed refreshes", 20_000);
      expect(lines("schema refresh failed; keeping the last good copy")).toHaveLength(1);
      failWith = undefined;
      await waitUntil(() => lines("schema refresh works again").length > 0, "the recovery line");
      const [recovered] = lines("schema refresh works again");
      expect(recovered?.failures).toBeGreaterThanOrEqual(4);
      expect(recovered?.source).toBe(source());
      expect(lines("schema refresh failed; keeping the last good copy")).toHaveLength(1);
    } finally {
      failWith = undefined;
      await gateway.stop("SIGKILL");
    }
  });

  test("a source that is down stops the start with a fatal line naming the URL and the reason", async () => {
    const down = `https://127.0.0.1:${await freePort()}/schemas.json`;
    const { code, stdout } = await runUntilExit(runtime, {
      SCHEMAS: down,
      KAFKA_BROKERS: "",
      REDIS_URL: "",
      LOCAL_LOG_DIR: join(folder, `down-${runtime}`),
      JWT_SECRET: TEST_SECRET,
      HOST: "127.0.0.1",
      PORT: "0",
    });
    expect(code).toBe(1);
    const fatal = stdout
      .split("\n")
      .filter((line) => line.includes('"level":"fatal"'))
      .map((line) => JSON.parse(line) as { msg: string });
    expect(fatal).toHaveLength(1);
    expect(fatal[0]?.msg).toStartWith(`SCHEMAS: cannot load: GET ${down}: `);
    expect(fatal[0]?.msg).toContain("ECONNREFUSED");
  });

  test("a source larger than the 16 MiB limit stops the start with a fatal line naming it, read no further", async () => {
    const endlessSource = `https://127.0.0.1:${server.port}/endless.json`;
    const started = Date.now();
    const { code, stdout } = await runUntilExit(runtime, {
      SCHEMAS: endlessSource,
      NODE_EXTRA_CA_CERTS: certificate,
      KAFKA_BROKERS: "",
      REDIS_URL: "",
      LOCAL_LOG_DIR: join(folder, `endless-${runtime}`),
      JWT_SECRET: TEST_SECRET,
      HOST: "127.0.0.1",
      PORT: "0",
    });
    expect(code).toBe(1);
    const fatal = stdout
      .split("\n")
      .filter((line) => line.includes('"level":"fatal"'))
      .map((line) => JSON.parse(line) as { msg: string });
    expect(fatal.map((line) => line.msg)).toEqual([
      `SCHEMAS: cannot load: GET ${endlessSource}: larger than 16777216 bytes, the limit of a remote document`,
    ]);
    // Refused at the limit, not read on until the 10 s read timeout.
    expect(Date.now() - started).toBeLessThan(9000);
  });

  test("without the CA the certificate is refused and the gateway does not start", async () => {
    const { code, stdout, stderr } = await runUntilExit(runtime, {
      SCHEMAS: source(),
      NODE_EXTRA_CA_CERTS: "",
      KAFKA_BROKERS: "",
      REDIS_URL: "",
      LOCAL_LOG_DIR: join(folder, `refused-${runtime}`),
      JWT_SECRET: TEST_SECRET,
      HOST: "127.0.0.1",
      PORT: "0",
    });
    expect(code).toBe(1);
    expect(stdout + stderr).toMatch(/certificate|self[- ]signed/i);
  });
});
