// The k6 fan-out scenario loadtest/fanout.js: against the real gateway on each runtime (every
// subscriber gets every message), and against a stand-in that loses or delays a message.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import type { ServerWebSocket } from "bun";
import { RUNTIMES, type RunningGateway, startGateway } from "../e2e/harness.ts";
import { token } from "../support/tokens.ts";

const ROOT = join(import.meta.dir, "../..");
const SCRIPT = join(ROOT, "loadtest/fanout.js");
const K6 =
  Bun.which("k6") ?? join(process.env.EDGE_GATEWAY_CACHE ?? join(homedir(), ".cache/edge-gateway"), "bin/k6");

let work: string | undefined;
afterEach(() => {
  if (work) rmSync(work, { recursive: true, force: true });
  work = undefined;
});

/** Runs the scenario with 5 subscribers and 10 messages in a second; its exit code, stderr and summary export. */
async function runK6(env: Record<string, string>) {
  work = mkdtempSync(join(tmpdir(), "k6-fanout-"));
  const summary = join(work, "summary.json");
  const settings = Object.entries({ SUBSCRIBERS: "5", MESSAGES: "10", PUBLISH_RATE: "10", ...env }).flatMap(
    ([name, value]) => ["-e", `${name}=${value}`],
  );
  const k6 = Bun.spawn(
    // Only the settings given here: k6 would read TOKEN, BASE_URL, … from this process's environment too.
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

test("docs/load-testing.md states the scenario's thresholds as k6 reads them", async () => {
  const inspect = Bun.spawn([K6, "inspect", "--include-system-env-vars=false", "-e", "TOKEN=t", SCRIPT]);
  const thresholds = JSON.parse(await new Response(inspect.stdout).text()).thresholds as Record<
    string,
    string[]
  >;
  expect(thresholds).toEqual({
    fanout_lost: ["count==0"],
    fanout_delivery: ["p(95)<1000"],
    checks: ["rate==1"],
    http_req_failed: ["rate==0"],
  });
  const doc = readFileSync(join(ROOT, "docs/load-testing.md"), "utf8");
  const section = doc.slice(doc.indexOf("## Fan-out"));
  for (const [metric, [threshold]] of Object.entries(thresholds))
    expect(section).toContain(
      `| \`${metric}\` \`${(threshold as string).replace("1000", "DELIVERY_P95_MS")}\` |`,
    );
});

describe.each(RUNTIMES)("against the real gateway on %s", (runtime) => {
  let gateway: RunningGateway;
  beforeAll(async () => {
    gateway = await startGateway(runtime);
  });
  afterAll(() => gateway?.stop("SIGKILL"));

  test("every subscriber gets every message; delivery is measured", async () => {
    const bearer = await token(`k6fanout${runtime}${Date.now()}`, ["subscribe", "publish"]);
    const { code, metrics } = await runK6({ BASE_URL: gateway.url, TOKEN: bearer });
    expect(code).toBe(0);
    expect(metrics.fanout_delivered?.count).toBe(5 * 10);
    expect(metrics.fanout_lost?.count).toBe(0);
    expect(metrics.fanout_delivery?.["p(95)"]).toBeGreaterThan(0);
    expect(metrics.checks?.value).toBe(1);
  }, 60_000);
});

describe("against a stand-in gateway", () => {
  type Socket = ServerWebSocket<{ channel?: string }>;
  let server: ReturnType<typeof Bun.serve<{ channel?: string }, never>> | undefined;
  afterEach(() => {
    server?.stop(true);
    server = undefined;
  });

  /** Serves /v1/ws, presence and publish; `deliver` decides what each subscriber gets of each publish, and when. */
  function standIn(deliver: (socket: Socket, index: number, seq: number, send: () => void) => void) {
    const sockets: Socket[] = [];
    server = Bun.serve<{ channel?: string }, never>({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(request, self) {
        const { pathname } = new URL(request.url);
        if (pathname === "/v1/ws")
          return self.upgrade(request, { data: {} }) ? undefined : new Response("", { status: 400 });
        if (pathname.endsWith("/presence")) {
          const connections = sockets.filter((socket) => socket.data.channel !== undefined).length;
          return Response.json({ members: [{ subject: "dev", connections }] });
        }
        const { channel, data } = (await request.json()) as { channel: string; data: { seq: number } };
        const frame = JSON.stringify({ type: "event", channel, id: "0-0-1", data });
        for (const [index, socket] of sockets.entries())
          deliver(socket, index, data.seq, () => socket.send(frame));
        return Response.json({ published: 1 }, { status: 202 });
      },
      websocket: {
        open: (socket) => void sockets.push(socket),
        message(socket, message) {
          const frame = JSON.parse(String(message));
          socket.data.channel = frame.channel;
          socket.send(JSON.stringify({ type: "subscribed", channel: frame.channel, position: null }));
        },
      },
    });
    return `http://127.0.0.1:${server.port}`;
  }

  test("all delivered at once: the run passes", async () => {
    const url = standIn((_socket, _index, _seq, send) => send());
    const { code, metrics } = await runK6({ BASE_URL: url, TOKEN: "t" });
    expect(code).toBe(0);
    expect(metrics.fanout_lost?.count).toBe(0);
  }, 30_000);

  test("one message lost to one subscriber fails the run, counted in fanout_lost", async () => {
    const url = standIn((_socket, index, seq, send) => {
      if (!(index === 0 && seq === 3)) send();
    });
    const { code, metrics } = await runK6({ BASE_URL: url, TOKEN: "t" });
    expect(code).toBe(99); // k6's "thresholds crossed"
    expect(metrics.fanout_lost?.count).toBe(1);
    expect(metrics.fanout_lost?.thresholds).toEqual({ "count==0": true });
    expect(metrics.fanout_delivered?.count).toBe(5 * 10 - 1);
  }, 30_000);

  test("delivery slower than DELIVERY_P95_MS fails the run", async () => {
    // The end mark too, so that it still comes after every message, as a channel's events do.
    const url = standIn((_socket, _index, _seq, send) => setTimeout(send, 150));
    const { code, metrics } = await runK6({ BASE_URL: url, TOKEN: "t", DELIVERY_P95_MS: "100" });
    expect(code).toBe(99);
    expect(metrics.fanout_delivery?.["p(95)"]).toBeGreaterThanOrEqual(150);
    expect(metrics.fanout_delivery?.thresholds).toEqual({ "p(95)<100": true });
    expect(metrics.fanout_lost?.count).toBe(0);
  }, 30_000);
});
