// The k6 scenario loadtest/ingest.js, run by k6 for a second against a tiny local server.
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";

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

test("429 and 503 fail the run and are counted apart, as rate_limited_429 and overloaded_503", async () => {
  let requests = 0;
  const sent = { 429: 0, 503: 0 };
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(request) {
      const records = JSON.parse(await request.text());
      const status = [202, 429, 202, 503][requests++ % 4] as 202 | 429 | 503;
      if (status !== 202) {
        sent[status]++;
        return Response.json({ error: status === 429 ? "rate_limited" : "unavailable" }, { status });
      }
      const accepted = Array.isArray(records) ? records.length : 1;
      return Response.json({ accepted, rejected: 0, errors: [] }, { status: 202 });
    },
  });
  const { code, metrics } = await runK6({ BASE_URL: `http://127.0.0.1:${server.port}`, TOKEN: "t" });
  expect(code).toBe(99); // k6's "thresholds crossed"
  expect(sent[429]).toBeGreaterThan(0);
  expect(sent[503]).toBeGreaterThan(0);
  expect([metrics.rate_limited_429?.count, metrics.overloaded_503?.count]).toEqual([sent[429], sent[503]]);
}, 30_000);

test("all 202: the run passes, with both counters at zero in its summary", async () => {
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
  expect(await thresholds()).toEqual({ http_req_failed: ["rate<0.01"], checks: ["rate>0.99"] });
  expect(await thresholds("-e", "P99_MS=50")).toMatchObject({
    "http_req_duration{scenario:single}": ["p(99)<50"],
    "http_req_duration{scenario:batch100}": ["p(99)<100"],
  });
  const results = readFileSync(join(ROOT, "loadtest/RESULTS.md"), "utf8");
  const stated = /Thresholds in `loadtest\/ingest\.js`: ([^.]*)\./.exec(results)?.[1];
  expect(stated).toBe("failed < 1% and checks > 99%");
  expect(results).toContain(
    "`-e P99_MS=<ms>` adds p99 thresholds (that for single\nevents, twice it for batches",
  );
});
