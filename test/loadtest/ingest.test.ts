// The k6 scenario loadtest/ingest.js, run by k6 for a second against a tiny local server, and
// for a few seconds against the real gateway with a budget it crosses.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { RUNTIMES, type RunningGateway, startGateway } from "../e2e/harness.ts";
import { token } from "../support/tokens.ts";

const ROOT = join(import.meta.dir, "../..");
const SCRIPT = join(ROOT, "loadtest/ingest.js");
const K6 =
  Bun.which("k6") ?? join(process.env.EDGE_GATEWAY_CACHE ?? join(homedir(), ".cache/edge-gateway"), "bin/k6");

let server: ReturnType<typeof Bun.serve> | undefined;
let work: string | undefined;
afterEach(() => {
  server?.stop(true);
  server = undefined;
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
});

/** Runs the scenario for one second at a few requests a second; its exit code, stderr and summary export. */
async function runK6(env: Record<string, string>) {
  work = mkdtempSync(join(tmpdir(), "k6-ingest-"));
  const summary = join(work, "summary.json");
  const settings = Object.entries({ DURATION: "1s", SINGLE_RATE: "10", BATCH_RATE: "4", ...env }).flatMap(
    ([name, value]) => ["-e", `${name}=${value}`],
  );
  const k6 = Bun.spawn(
    // Only the settings given here: k6 would read TOKEN, DURATION, … from this process's environment too.
    [K6, "run", "--quiet", "--no-usage-report", "--include-system-env-vars=false", ...settings].concat([
      "--summary-export",
      summary,
      SCRIPT,
    ]),
    { stdout: "ignore", stderr: "pipe" },
  );
  const [code, stderr] = await Promise.all([k6.exited, new Response(k6.stderr).text()]);
  const metrics = code === 0 || code === 99 ? JSON.parse(readFileSync(summary, "utf8")).metrics : {};
  return { code, stderr, metrics };
}

test("every setting the scenario reads is described at its top", () => {
  const source = readFileSync(SCRIPT, "utf8");
  const header = source.slice(0, source.indexOf("import "));
  const read = new Set([...source.matchAll(/__ENV\.([A-Z0-9_]+)/g)].map((found) => found[1] as string));
  expect(read.size).toBeGreaterThan(0);
  for (const name of read) expect(header).toMatch(new RegExp(`^//\\s+${name}\\s`, "m"));
});

/** A stand-in gateway answering its requests in turn with `statuses` (202 accepting every record). */
function serveInTurn(statuses: number[], headers: Record<string, string>) {
  let requests = 0;
  const sent: Record<number, number> = {};
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(request) {
      const records = JSON.parse(await request.text());
      const status = statuses[requests++ % statuses.length] as number;
      sent[status] = (sent[status] ?? 0) + 1;
      if (status !== 202)
        return Response.json({ error: status === 429 ? "rate_limited" : "overloaded" }, { status, headers });
      const accepted = Array.isArray(records) ? records.length : 1;
      return Response.json({ accepted, rejected: 0, errors: [] }, { status: 202 });
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, sent };
}

test("429 and 503 with Retry-After are pushback: the run passes, counting them in gateway_pushback", async () => {
  const { url, sent } = serveInTurn([202, 429, 202, 503], { "Retry-After": "0" });
  const { code, metrics } = await runK6({ BASE_URL: url, TOKEN: "t" });
  expect(code).toBe(0);
  expect(sent[429]).toBeGreaterThan(0);
  expect(sent[503]).toBeGreaterThan(0);
  expect([metrics.rate_limited_429?.count, metrics.overloaded_503?.count]).toEqual([sent[429], sent[503]]);
  const answers = (sent[202] ?? 0) + (sent[429] ?? 0) + (sent[503] ?? 0);
  expect(metrics.gateway_pushback?.value).toBeCloseTo(((sent[429] ?? 0) + (sent[503] ?? 0)) / answers, 5);
  expect(metrics.http_req_failed?.value).toBe(0);
}, 30_000);

test("pushback past MAX_PUSHBACK fails the run", async () => {
  const { url } = serveInTurn([202, 429, 202, 503], { "Retry-After": "0" });
  const { code, metrics } = await runK6({ BASE_URL: url, TOKEN: "t", MAX_PUSHBACK: "0.2" });
  expect(code).toBe(99); // k6's "thresholds crossed"
  expect(metrics.gateway_pushback?.thresholds).toEqual({ "rate<=0.2": true });
}, 30_000);

test("429 and 503 without Retry-After are failures, not pushback: the run fails", async () => {
  const { url, sent } = serveInTurn([202, 429, 202, 503], {});
  const { code, metrics } = await runK6({ BASE_URL: url, TOKEN: "t" });
  expect(code).toBe(99);
  expect(sent[429]).toBeGreaterThan(0);
  expect(metrics.gateway_pushback?.value).toBe(0);
  expect(metrics.checks?.thresholds).toEqual({ "rate>0.99": true });
}, 30_000);

test("a 500 fails the run, with or without Retry-After", async () => {
  const { url } = serveInTurn([202, 500], { "Retry-After": "0" });
  const { code, metrics } = await runK6({ BASE_URL: url, TOKEN: "t" });
  expect(code).toBe(99);
  expect(metrics.gateway_pushback?.value).toBe(0);
  expect(metrics.http_req_failed?.thresholds).toEqual({ "rate<0.01": true });
}, 30_000);

test("a VU waits out Retry-After before its next request, 5 s at most", async () => {
  const wait = async (retryAfter: string) => {
    serveInTurn([429], { "Retry-After": retryAfter });
    const { code, metrics } = await runK6({
      BASE_URL: `http://127.0.0.1:${server?.port}`,
      TOKEN: "t",
      SINGLE_RATE: "3",
      BATCH_RATE: "1",
      MAX_PUSHBACK: "1",
    });
    server?.stop(true);
    expect(code).toBe(0);
    expect(metrics.gateway_pushback?.value).toBe(1);
    return metrics.iteration_duration as { min: number; max: number };
  };
  const oneSecond = await wait("1");
  expect(oneSecond.min).toBeGreaterThanOrEqual(1000);
  expect(oneSecond.max).toBeLessThan(2000);
  const anHour = await wait("3600");
  expect(anHour.min).toBeGreaterThanOrEqual(5000);
  expect(anHour.max).toBeLessThan(6000);
}, 30_000);

test("all 202: the run passes, with no pushback in its summary", async () => {
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(request) {
      const records = JSON.parse(await request.text());
      const accepted = Array.isArray(records) ? records.length : 1;
      return Response.json({ accepted, rejected: 0, errors: [] }, { status: 202 });
    },
  });
  const { code, metrics } = await runK6({ BASE_URL: `http://127.0.0.1:${server.port}`, TOKEN: "t" });
  expect(code).toBe(0);
  expect([metrics.rate_limited_429?.count, metrics.overloaded_503?.count]).toEqual([0, 0]);
  expect(metrics.gateway_pushback?.value).toBe(0);
}, 30_000);

test("without TOKEN the scenario stops before sending anything, saying what to set", async () => {
  let requests = 0;
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch() {
      requests++;
      return new Response("", { status: 401 });
    },
  });
  const { code, stderr } = await runK6({ BASE_URL: `http://127.0.0.1:${server.port}` });
  expect(code).not.toBe(0);
  expect(stderr).toContain("set -e TOKEN=");
  expect(requests).toBe(0);
}, 30_000);

test("loadtest/RESULTS.md states the scenario's thresholds as k6 reads them: latency only with P99_MS", async () => {
  const thresholds = async (...settings: string[]) => {
    const inspect = Bun.spawn([
      K6,
      "inspect",
      "--include-system-env-vars=false",
      "-e",
      "TOKEN=t",
      ...settings,
      SCRIPT,
    ]);
    return JSON.parse(await new Response(inspect.stdout).text()).thresholds;
  };
  expect(await thresholds()).toEqual({
    http_req_failed: ["rate<0.01"],
    checks: ["rate>0.99"],
    gateway_pushback: ["rate<=0.5"],
  });
  expect(await thresholds("-e", "P99_MS=50")).toMatchObject({
    "http_req_duration{scenario:single_events}": ["p(99)<50"],
    "http_req_duration{scenario:batches_of_100}": ["p(99)<100"],
  });
  const results = readFileSync(join(ROOT, "loadtest/RESULTS.md"), "utf8");
  const stated = /Thresholds in `loadtest\/ingest\.js`: ([^.]*)\./.exec(results)?.[1];
  expect(stated).toBe("failed < 1%, checks > 99% and pushback at most 50% (`MAX_PUSHBACK`)");
  expect(results).toContain(
    "`-e P99_MS=<ms>` adds p99 thresholds (that for single\nevents, twice it for batches",
  );
});

describe.each(RUNTIMES)("against the real gateway on %s, with a budget of 150 events a second", (runtime) => {
  let gateway: RunningGateway;
  let bearer: string;
  beforeAll(async () => {
    gateway = await startGateway(runtime, { RATE_LIMIT_EVENTS_PER_SEC: "150" });
    bearer = await token(`k6pushback${runtime}${Date.now()}`, ["ingest"]);
  });
  afterAll(() => gateway?.stop("SIGKILL"));

  // 10 single events and 4 batches of 100 a second: 410 events a second against 150.
  const settings = () => ({ BASE_URL: gateway.url, TOKEN: bearer, DURATION: "3s" });

  test("the 429s are pushback: the run passes and reports them", async () => {
    const { code, metrics } = await runK6(settings());
    expect(code).toBe(0);
    expect(metrics.rate_limited_429?.count).toBeGreaterThan(0);
    expect(metrics.gateway_pushback?.value).toBeGreaterThan(0);
    expect(metrics.checks?.value).toBe(1);
    expect(metrics.http_req_failed?.value).toBe(0);
  }, 60_000);

  test("with MAX_PUSHBACK=0 the same run fails", async () => {
    const { code, metrics } = await runK6({ ...settings(), MAX_PUSHBACK: "0" });
    expect(code).toBe(99);
    expect(metrics.gateway_pushback?.thresholds).toEqual({ "rate<=0": true });
    expect(metrics.checks?.value).toBe(1);
  }, 60_000);
});
