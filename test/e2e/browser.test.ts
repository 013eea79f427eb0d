import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import type * as ClientModule from "../../clients/typescript/src/index.js";
import { serveBrowserEvents } from "../../examples/browser-events/serve.ts";
import { serveDashboard } from "../../examples/live-dashboard/serve.ts";
import { JwksServer, signingKey } from "../support/jwks.ts";
import { tempDirs } from "../support/temp-dir.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { freePort, publishEvent, RUNTIMES, type RunningGateway, startGateway } from "./harness.ts";

/** Log folders of this file's gateways, removed after its tests. */
const tempDir = tempDirs();

/** Debian's chromium (scripts/install-tools), driven by puppeteer-core: no browser download. */
const CHROMIUM = "/usr/bin/chromium";
const CLIENT_ENTRY = new URL("../../clients/typescript/src/index.ts", import.meta.url).pathname;
/** The embedded sink and bus, even when the test command exported the real services' addresses. */
const EMBEDDED = { KAFKA_BROKERS: "", REDIS_URL: "" };

/** A page that loads the client bundle and exposes it as `globalThis.edgeClient`. */
const TEST_PAGE = `<!doctype html><meta charset="utf-8"><title>client test</title>
<script type="module">import * as client from "/client.js"; globalThis.edgeClient = client;</script>`;

type PageGlobals = typeof globalThis & { edgeClient: typeof ClientModule; seen: unknown[] };
/** `navigator.locks` as a page sees it (this project's types have no DOM library). */
type ClientLocks = { query(): Promise<{ held: Array<{ name: string }> }> };
/** The example page's stats, as it shows them. */
type ExamplePage = typeof globalThis & {
  document: { getElementById(id: string): { textContent: string | null } | null };
};
/** The DOM the dashboard test reads (this project's types have no DOM library). */
type DashboardPage = typeof globalThis & {
  document: {
    getElementById(
      id: string,
    ): { textContent: string | null; dataset: Record<string, string | undefined> } | null;
  };
};

/** A static server for the test page, on its own port: another origin than the gateway's. */
function servePage(bundle: string) {
  return Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      const { pathname } = new URL(request.url);
      if (pathname === "/client.js")
        return new Response(bundle, { headers: { "content-type": "text/javascript" } });
      return new Response(TEST_PAGE, { headers: { "content-type": "text/html" } });
    },
  });
}

function loggedRecords(dir: string): Array<{ id: string; type: string; data: Record<string, unknown> }> {
  return readdirSync(dir)
    .filter((name) => name.endsWith(".ndjson"))
    .flatMap((name) => readFileSync(join(dir, name), "utf8").split("\n"))
    .filter((line) => line !== "")
    .map(
      (line) =>
        (JSON.parse(line) as { value: { id: string; type: string; data: Record<string, unknown> } }).value,
    );
}

function loggedIds(dir: string): string[] {
  return loggedRecords(dir).map((record) => record.id);
}

let browser: Browser;
let allowed: ReturnType<typeof Bun.serve>;
let refused: ReturnType<typeof Bun.serve>;
let example: Awaited<ReturnType<typeof serveBrowserEvents>>;
const origin = (server: ReturnType<typeof Bun.serve>) => `http://127.0.0.1:${server.port}`;

beforeAll(async () => {
  const build = await Bun.build({ entrypoints: [CLIENT_ENTRY], target: "browser", format: "esm" });
  const bundle = await (build.outputs[0] as Blob).text();
  allowed = servePage(bundle);
  refused = servePage(bundle);
  example = await serveBrowserEvents({ tokens: { secret: TEST_SECRET, tenant: "acme", scopes: ["ingest"] } });
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
});
afterAll(async () => {
  await browser?.close();
  allowed?.stop(true);
  refused?.stop(true);
  example?.stop();
});

async function openPage(server: ReturnType<typeof Bun.serve>): Promise<Page> {
  const page = await browser.newPage();
  await page.goto(`${origin(server)}/`);
  await page.waitForFunction(() => "edgeClient" in globalThis, { timeout: 5000 });
  return page;
}

describe("the client's browser queue in headless Chromium (no gateway)", () => {
  test("close() lets the tab's Web Lock go: another open tab takes its unsent records at once", async () => {
    const queue = `close-${Date.now()}`;
    const [closing, other] = [await openPage(allowed), await openPage(allowed)];
    const closed = await closing.evaluate(async (queue) => {
      const { EventClient, browserQueue } = (globalThis as PageGlobals).edgeClient;
      const storage = browserQueue(queue);
      // The gateway unreachable (a closed port): the records stay stored when close() gives up.
      const events = new EventClient({
        url: "http://127.0.0.1:9",
        token: "t",
        storage,
        flushIntervalMs: 60_000,
      });
      const ids = [1, 2].map((n) => events.enqueue({ type: "click", data: { element: `close-${n}` } }));
      await storage.flush();
      await events.close({ timeoutMs: 100 });
      const locks = (globalThis as unknown as { navigator: { locks: ClientLocks } }).navigator.locks;
      const held = (await locks.query()).held.map((lock) => lock.name);
      return { ids, held: held.filter((name) => name.startsWith("edge-gateway-queue:")) };
    }, queue);
    expect(closed.held).toEqual([]);
    const taken = await other.evaluate(
      async (queue) =>
        (await (globalThis as PageGlobals).edgeClient.browserQueue(queue).load()).map((record) => record.id),
      queue,
    );
    expect(taken).toEqual(closed.ids as string[]);
    await closing.close();
    await other.close();
  });
});

describe("localStorageQueue in headless Chromium (no gateway)", () => {
  test("each tab writes its records under a key of its own; a tab starting takes a closed client's, never an open one's", async () => {
    const queue = `local-${Date.now()}`;
    const [first, second] = [await openPage(allowed), await openPage(allowed)];
    const store = (page: Page, ids: string[]) =>
      page.evaluate(
        async ({ queue, ids }) => {
          const globals = globalThis as PageGlobals & { queue?: ClientModule.QueueStorage };
          globals.queue = globals.edgeClient.localStorageQueue(queue);
          const taken = (await globals.queue.load()).map((record) => record.id);
          globals.queue.add(ids.map((id) => ({ id, line: JSON.stringify({ id }) })));
          await globals.queue.flush();
          return taken;
        },
        { queue, ids },
      );
    expect(await store(first, ["a1", "a2"])).toEqual([]);
    // The first tab's client is open: the second takes nothing of it.
    expect(await store(second, ["b1"])).toEqual([]);
    const keys = await second.evaluate(
      (queue) =>
        Object.keys((globalThis as unknown as { localStorage: object }).localStorage)
          .filter((key) => key.startsWith(queue))
          .map((key) => key.replace(/edge-gateway-queue:.*/, "<tab>")),
      queue,
    );
    expect(keys).toEqual([`${queue}:<tab>`, `${queue}:<tab>`]);
    await first.evaluate(() =>
      (globalThis as PageGlobals & { queue: ClientModule.QueueStorage }).queue.close?.(),
    );
    const third = await openPage(allowed);
    expect(await store(third, [])).toEqual(["a1", "a2"]);
    for (const page of [first, second, third]) await page.close();
  });
});

describe.each(RUNTIMES)("the client in headless Chromium, from another origin, against %s", (runtime) => {
  let gateway: RunningGateway;
  let folder: string;
  let port: number;
  // A port of its own, not PORT=0: a test restarts the gateway on the same port (see freePort).
  const env = () => ({
    ...EMBEDDED,
    CORS_ORIGINS: `${origin(allowed)},${new URL(example.url).origin}`,
    LOCAL_LOG_DIR: join(folder, "log"),
    PORT: String(port),
  });

  beforeAll(async () => {
    folder = mkdtempSync(join(tmpdir(), "browser-e2e-"));
    port = await freePort();
    gateway = await startGateway(runtime, env());
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
    rmSync(folder, { recursive: true, force: true });
  });

  test("ingest and publish cross-origin get 202, and the page's subscriber receives both live", async () => {
    const page = await openPage(allowed);
    const result = await page.evaluate(
      async ({ url, subscribeToken, ingestToken }) => {
        const { EventClient, Subscriber } = (globalThis as PageGlobals).edgeClient;
        const subscriber = new Subscriber({ url, token: subscribeToken, channels: ["orders"] });
        const subscribed = new Promise((resolve) => subscriber.on("subscribed", resolve));
        await Promise.race([subscribed, new Promise((resolve) => setTimeout(resolve, 5000))]);
        const received: unknown[] = [];
        const both = new Promise((resolve) =>
          subscriber.on("event", (event) => {
            received.push(event);
            if (received.length === 2) resolve(undefined);
          }),
        );
        const answers: Array<{ status: number; limit: string | null }> = [];
        const events = new EventClient({
          url,
          token: ingestToken,
          gzipMinBytes: 0,
          fetch: async (target, init) => {
            const response = await fetch(target, init);
            answers.push({ status: response.status, limit: response.headers.get("ratelimit-limit") });
            return response;
          },
        });
        const id = events.enqueue({ type: "click", channel: "orders", data: { element: "from-the-page" } });
        await events.flush();
        const published = await fetch(`${url}/v1/publish`, {
          method: "POST",
          headers: { authorization: `Bearer ${ingestToken}`, "content-type": "application/json" },
          body: JSON.stringify({ channel: "orders", data: { from: "page" } }),
        });
        await Promise.race([both, new Promise((resolve) => setTimeout(resolve, 5000))]);
        subscriber.close();
        return { id, answers, publishStatus: published.status, received };
      },
      {
        url: gateway.url,
        subscribeToken: await token("acme", ["subscribe"]),
        ingestToken: await token("acme", ["ingest", "publish"]),
      },
    );
    // 202s, and the exposed rate-limit headers are readable by the script.
    expect(result.answers).toEqual([{ status: 202, limit: expect.any(String) as unknown as string }]);
    expect(result.publishStatus).toBe(202);
    expect(result.received).toEqual([
      expect.objectContaining({ channel: "orders", recordId: result.id, data: { element: "from-the-page" } }),
      expect.objectContaining({ channel: "orders", data: { from: "page" } }),
    ]);
    await page.close();
  });

  test("a page on an origin not in CORS_ORIGINS is refused: no fetch, no WebSocket", async () => {
    const page = await openPage(refused);
    const marker = `refused-${Date.now()}`;
    const outcome = await page.evaluate(
      async ({ url, ingestToken, subscribeToken, marker }) => {
        let fetchOutcome: string;
        try {
          const response = await fetch(`${url}/v1/events`, {
            method: "POST",
            headers: { authorization: `Bearer ${ingestToken}`, "content-type": "application/json" },
            body: JSON.stringify({ id: marker, type: "click", data: { element: "x" } }),
          });
          fetchOutcome = `status ${response.status}`;
        } catch (error) {
          fetchOutcome = (error as Error).name;
        }
        const socket = new WebSocket(`${url.replace("http", "ws")}/v1/ws?token=${subscribeToken}`);
        const socketOutcome = await new Promise<string>((resolve) => {
          socket.onopen = () => resolve("open");
          socket.onclose = (event) => resolve(`closed ${event.code}`);
        });
        return { fetchOutcome, socketOutcome };
      },
      {
        url: gateway.url,
        ingestToken: await token("acme", ["ingest"]),
        subscribeToken: await token("acme", ["subscribe"]),
        marker,
      },
    );
    expect(outcome).toEqual({ fetchOutcome: "TypeError", socketOutcome: "closed 1006" });
    expect(loggedIds(join(folder, "log"))).not.toContain(marker);
    await page.close();
  });

  test("records still buffered when the page goes away are sent with keepalive", async () => {
    const page = await openPage(allowed);
    const ids = await page.evaluate(
      ({ url, ingestToken }) => {
        const { EventClient } = (globalThis as PageGlobals).edgeClient;
        const events = new EventClient({ url, token: ingestToken, flushIntervalMs: 60_000 });
        return [1, 2, 3].map((n) => events.enqueue({ type: "click", data: { element: `unload-${n}` } }));
      },
      { url: gateway.url, ingestToken: await token("acme", ["ingest"]) },
    );
    await page.goto("about:blank");
    const deadline = Date.now() + 5000;
    while (
      Date.now() < deadline &&
      !ids.every((id) => loggedIds(join(folder, "log")).includes(id as string))
    ) {
      await Bun.sleep(100);
    }
    expect(loggedIds(join(folder, "log"))).toEqual(expect.arrayContaining(ids as string[]));
    await page.close();
  });

  test("a page that closes before any request still sends its records: the callback's token was resolved ahead", async () => {
    const page = await openPage(allowed);
    const ids = await page.evaluate(
      ({ url, ingestToken }) => {
        const { EventClient } = (globalThis as PageGlobals).edgeClient;
        const events = new EventClient({
          url,
          token: async () => ingestToken,
          flushIntervalMs: 60_000,
        });
        return [1, 2].map((n) => events.enqueue({ type: "click", data: { element: `ahead-${n}` } }));
      },
      { url: gateway.url, ingestToken: await token("acme", ["ingest"]) },
    );
    await page.goto("about:blank");
    const deadline = Date.now() + 5000;
    while (
      Date.now() < deadline &&
      !ids.every((id) => loggedIds(join(folder, "log")).includes(id as string))
    ) {
      await Bun.sleep(100);
    }
    expect(loggedIds(join(folder, "log"))).toEqual(expect.arrayContaining(ids as string[]));
    await page.close();
  });

  test("while the browser is offline nothing is sent and no attempt is spent; back online, the records go", async () => {
    const page = await openPage(allowed);
    await page.setOfflineMode(true);
    const id = await page.evaluate(
      async ({ url, ingestToken }) => {
        const globals = globalThis as PageGlobals & {
          events?: ClientModule.EventClient;
        };
        const { EventClient } = globals.edgeClient;
        // Two quick attempts: requests sent while offline would drop the record within the 300 ms below
        // (one more than that: the first request just after coming back online may still fail).
        globals.events = new EventClient({
          url,
          token: ingestToken,
          flushIntervalMs: 10,
          retry: { maxAttempts: 2, initialDelayMs: 50 },
        });
        const id = globals.events.enqueue({ type: "click", data: { element: "offline" } });
        await new Promise((resolve) => setTimeout(resolve, 300));
        return id;
      },
      { url: gateway.url, ingestToken: await token("acme", ["ingest"]) },
    );
    await page.setOfflineMode(false);
    const stats = await page.evaluate(async () => {
      const events = (globalThis as PageGlobals & { events: ClientModule.EventClient }).events;
      await events.flush();
      return events.stats;
    });
    expect(stats).toMatchObject({ accepted: 1, dropped: 0, rejected: 0 });
    expect(loggedIds(join(folder, "log"))).toContain(id as string);
    await page.close();
  });

  test("with browserQueue, records a page could not send survive a real reload and are sent once, with their ids", async () => {
    const page = await openPage(allowed);
    const queue = `reload-${runtime}-${Date.now()}`;
    // The gateway unreachable (a closed port): the records stay in IndexedDB.
    const ids = await page.evaluate(
      async ({ queue, ingestToken }) => {
        const { EventClient, browserQueue } = (globalThis as PageGlobals).edgeClient;
        const storage = browserQueue(queue);
        const events = new EventClient({ url: "http://127.0.0.1:9", token: ingestToken, storage });
        const ids = [1, 2, 3].map((n) => events.enqueue({ type: "click", data: { element: `reload-${n}` } }));
        await storage.flush();
        return ids;
      },
      { queue, ingestToken: await token("acme", ["ingest"]) },
    );
    await page.reload();
    await page.waitForFunction(() => "edgeClient" in globalThis, { timeout: 5000 });
    const after = await page.evaluate(
      async ({ queue, url, ingestToken }) => {
        const { EventClient, browserQueue } = (globalThis as PageGlobals).edgeClient;
        const storage = browserQueue(queue);
        const events = new EventClient({ url, token: ingestToken, storage });
        await events.flush();
        await storage.flush();
        return { stats: events.stats, left: (await storage.load()).length };
      },
      { queue, url: gateway.url, ingestToken: await token("acme", ["ingest"]) },
    );
    expect(after).toEqual({
      stats: { buffered: 0, bufferedBytes: 0, accepted: 3, rejected: 0, dropped: 0, retries: 0 },
      left: 0,
    });
    const logged = loggedIds(join(folder, "log")).filter((id) => ids.includes(id));
    expect(logged).toEqual(ids as string[]);
    await page.close();
  });

  test("two tabs of a page on one browserQueue, while the gateway is unreachable: once it is back, each tab's records reach the log and the fan-out once", async () => {
    const queue = `tabs-${runtime}-${Date.now()}`;
    const channel = `tabs-${runtime}`;
    const ingestToken = await token("acme", ["ingest", "publish"]);
    const tabs = [await openPage(allowed), await openPage(allowed)];
    // The gateway unreachable from the tabs: their requests to it fail as a refused connection does.
    let unreachable = true;
    for (const tab of tabs) {
      await tab.setRequestInterception(true);
      tab.on("request", (request) => {
        if (unreachable && request.url().startsWith(gateway.url)) void request.abort("connectionrefused");
        else void request.continue();
      });
    }
    const ids: string[] = [];
    // One tab after the other: the second starts, and loads the queue, while the first holds its records unsent.
    for (const [index, tab] of tabs.entries()) {
      const enqueued = await tab.evaluate(
        async ({ url, ingestToken, queue, channel, index }) => {
          const globals = globalThis as PageGlobals & { events?: ClientModule.EventClient };
          const { EventClient, browserQueue } = globals.edgeClient;
          const storage = browserQueue(queue);
          const events = new EventClient({
            url,
            token: ingestToken,
            storage,
            flushIntervalMs: 10,
            retry: { initialDelayMs: 100, maxDelayMs: 200, maxAttempts: 1000 },
          });
          globals.events = events;
          const ids = [1, 2, 3].map((n) =>
            events.enqueue({ type: "click", channel, data: { element: `tab${index}-${n}` } }),
          );
          await storage.flush();
          // A failed attempt: the stored records were loaded before it.
          while (events.stats.retries === 0) await new Promise((resolve) => setTimeout(resolve, 20));
          return ids as string[];
        },
        { url: gateway.url, ingestToken, queue, channel, index },
      );
      ids.push(...enqueued);
    }
    unreachable = false;
    const stats = await Promise.all(
      tabs.map((tab) =>
        tab.evaluate(async () => {
          const events = (globalThis as PageGlobals & { events: ClientModule.EventClient }).events;
          await events.flush();
          return events.stats;
        }),
      ),
    );
    expect(stats.map(({ accepted, dropped, rejected }) => ({ accepted, dropped, rejected }))).toEqual([
      { accepted: 3, dropped: 0, rejected: 0 },
      { accepted: 3, dropped: 0, rejected: 0 },
    ]);
    // The ledger: every record written once to the log, and fanned out once on its channel.
    const logged = loggedIds(join(folder, "log")).filter((id) => ids.includes(id));
    expect(logged.toSorted()).toEqual(ids.toSorted());
    const history = await fetch(`${gateway.url}/v1/channels/${channel}/events?limit=100`, {
      headers: { authorization: `Bearer ${await token("acme", ["subscribe"])}` },
    });
    const { events } = (await history.json()) as { events: Array<{ recordId?: string }> };
    expect(events.map((event) => event.recordId as string).toSorted()).toEqual(ids.toSorted());
    for (const tab of tabs) await tab.close();
  });

  test("the browser example sends a page_view and typed clicks with EventClient and tokens from its server", async () => {
    const page = await browser.newPage();
    await page.goto(`${example.url}#gateway=${gateway.url}`);
    await page.waitForSelector('button[data-element="buy"]');
    await page.click('button[data-element="buy"]');
    await page.click('button[data-element="share"]');
    await page.waitForFunction(
      () => (globalThis as ExamplePage).document.getElementById("accepted")?.textContent === "3",
      { timeout: 8000 },
    );
    const records = loggedRecords(join(folder, "log")).filter(
      (record) =>
        record.type === "page_view" || record.data.element === "buy" || record.data.element === "share",
    );
    expect(records.map((record) => [record.type, record.data.element ?? record.data.url])).toEqual([
      ["page_view", `${example.url}#gateway=${gateway.url}`],
      ["click", "buy"],
      ["click", "share"],
    ]);
    expect(example.tokens.issued).toBeGreaterThanOrEqual(1);
    await page.close();
  });

  test("the page's subscriber resumes after the gateway restarts: a gap, then live events again", async () => {
    const page = await openPage(allowed);
    await page.evaluate(
      async ({ url, subscribeToken }) => {
        const globals = globalThis as PageGlobals;
        globals.seen = [];
        const subscriber = new globals.edgeClient.Subscriber({
          url,
          token: subscribeToken,
          channels: ["orders"],
        });
        for (const type of ["connected", "gap", "event"] as const) {
          subscriber.on(type, (payload) => globals.seen.push({ type, payload }));
        }
        const subscribed = new Promise((resolve) => subscriber.on("subscribed", resolve));
        await Promise.race([subscribed, new Promise((resolve) => setTimeout(resolve, 5000))]);
      },
      { url: gateway.url, subscribeToken: await token("acme", ["subscribe"]) },
    );
    await publishEvent(gateway, "orders", { n: 1 });
    await page.waitForFunction(() => (globalThis as PageGlobals).seen.length >= 2, { timeout: 5000 });
    await gateway.stop("SIGTERM");
    gateway = await startGateway(runtime, env());
    await page.waitForFunction(
      () => (globalThis as PageGlobals).seen.some((entry) => (entry as { type: string }).type === "gap"),
      { timeout: 10_000 },
    );
    await Bun.sleep(200);
    await publishEvent(gateway, "orders", { n: 2 });
    await page.waitForFunction(() => (globalThis as PageGlobals).seen.length >= 5, { timeout: 5000 });
    const seen = (await page.evaluate(() => (globalThis as PageGlobals).seen)) as Array<{
      type: string;
      payload: { data?: unknown; reason?: string };
    }>;
    expect(seen.map((entry) => entry.type)).toEqual(["connected", "event", "connected", "gap", "event"]);
    expect(seen[3]?.payload.reason).toBe("history_gone");
    expect(seen[4]?.payload.data).toEqual({ n: 2 });
    await page.close();
  });
});

describe.each(RUNTIMES)(
  "the page's subscriber across its token's expiry and an identity provider outage, against %s",
  (runtime) => {
    let gateway: RunningGateway;
    let jwks: JwksServer;
    let folder: string;

    beforeAll(async () => {
      folder = mkdtempSync(join(tmpdir(), "browser-refresh-"));
      jwks = await JwksServer.start([]);
      gateway = await startGateway(runtime, {
        ...EMBEDDED,
        CORS_ORIGINS: origin(allowed),
        LOCAL_LOG_DIR: join(folder, "log"),
        JWKS_URL: jwks.url,
        WS_TOKEN_EXPIRY_WARNING_MS: "4000",
      });
    });
    afterAll(async () => {
      await gateway.stop("SIGKILL");
      jwks.down();
      rmSync(folder, { recursive: true, force: true });
    });

    test("the token is refreshed in band, through an outage of the JWKS (unavailable, the socket stays), and events flow past its expiry", async () => {
      // The identity provider rotates its key: the refreshed token's key is one the gateway must fetch.
      const first = await signingKey(`first-${runtime}`);
      const rotated = await signingKey(`rotated-${runtime}`);
      jwks.up([first.jwk]);
      const page = await openPage(allowed);
      let issued = 0;
      let firstExpiresAt = 0;
      await page.exposeFunction("issueToken", async () => {
        issued++;
        if (issued > 1) return rotated.sign({ tenant: "acme", scope: "subscribe", ttlSec: 600 });
        firstExpiresAt = (Math.floor(Date.now() / 1000) + 6) * 1000;
        return first.sign({ tenant: "acme", scope: "subscribe", ttlSec: 6 });
      });
      await page.evaluate(async (url) => {
        const globals = globalThis as PageGlobals & { issueToken(): Promise<string> };
        globals.seen = [];
        const subscriber = new globals.edgeClient.Subscriber({
          url,
          token: () => globals.issueToken(),
          channels: ["refreshing"],
        });
        for (const type of ["connected", "refreshed", "error", "disconnected", "event"] as const) {
          subscriber.on(type, (payload) => globals.seen.push({ type, payload }));
        }
        const subscribed = new Promise((resolve) => subscriber.on("subscribed", resolve));
        await Promise.race([subscribed, new Promise((resolve) => setTimeout(resolve, 5000))]);
      }, gateway.url);
      // The identity provider goes away before the refresh (due 4 s before the 6 s token's exp).
      jwks.down();
      const seenType = (type: string) =>
        page.waitForFunction(
          (wanted) =>
            (globalThis as PageGlobals).seen.some((entry) => (entry as { type: string }).type === wanted),
          { timeout: 8000 },
          type,
        );
      await seenType("error");
      jwks.up([first.jwk, rotated.jwk]);
      await seenType("refreshed");
      // Past the first token's exp: the same socket, still subscribed.
      await Bun.sleep(Math.max(0, firstExpiresAt + 300 - Date.now()));
      const response = await fetch(`${gateway.url}/v1/publish`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${await first.sign({ tenant: "acme", scope: "publish" })}`,
          "content-type": "application/json",
        },
        body: JSON.stringify({ channel: "refreshing", data: { after: "expiry" } }),
      });
      expect(response.status).toBe(202);
      await seenType("event");
      const seen = (await page.evaluate(() => (globalThis as PageGlobals).seen)) as Array<{
        type: string;
        payload: { code?: string; data?: unknown };
      }>;
      expect(
        seen.map((entry) => (entry.type === "error" ? `error ${entry.payload.code}` : entry.type)),
      ).toEqual(["connected", "error unavailable", "refreshed", "event"]);
      expect(seen[3]?.payload.data).toEqual({ after: "expiry" });
      expect(issued).toBe(3);
      await page.close();
    });
  },
);

describe.each(RUNTIMES)("the live dashboard example in headless Chromium, against %s", (runtime) => {
  let gateway: RunningGateway;
  let dashboard: Awaited<ReturnType<typeof serveDashboard>>;
  let folder: string;

  beforeAll(async () => {
    folder = tempDir("dashboard-e2e-");
    // Two-second tokens from the dashboard's own server: the page outlives several of them.
    dashboard = await serveDashboard({
      tokens: { secret: TEST_SECRET, tenant: "acme", scopes: ["subscribe"], ttlSec: 2 },
    });
    gateway = await startGateway(runtime, {
      ...EMBEDDED,
      CORS_ORIGINS: new URL(dashboard.url).origin,
      LOCAL_LOG_DIR: join(folder, "log"),
    });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
    dashboard.stop();
  });

  test("shows a channel's events live with a per-second count, past its first token's expiry; a screenshot is saved", async () => {
    const page = await browser.newPage();
    await page.setViewport({ width: 1200, height: 800 });
    const settings = new URLSearchParams({ gateway: gateway.url, channel: "orders" });
    const openedAt = Date.now();
    await page.goto(`${dashboard.url}#${settings}`);
    await page.waitForSelector('#status[data-state="live"]', { timeout: 5000 });
    await Bun.sleep(200);
    for (let n = 1; n <= 5; n++) await publishEvent(gateway, "orders", { order: n, total: n * 10 });
    await page.waitForFunction(
      () => (globalThis as DashboardPage).document.getElementById("total")?.textContent === "5",
      {
        timeout: 5000,
      },
    );
    const rows = await page.$$eval("#events li code", (cells) => cells.map((cell) => cell.textContent));
    expect(rows).toEqual([5, 4, 3, 2, 1].map((n) => JSON.stringify({ order: n, total: n * 10 })));
    // The per-second chart counted all five; the rate shows the last full second.
    await page.waitForFunction(
      () => {
        const series = JSON.parse(
          (globalThis as DashboardPage).document.getElementById("chart")?.dataset.series ?? "[]",
        ) as number[];
        return series.reduce((sum, count) => sum + count, 0) === 5;
      },
      { timeout: 3000 },
    );
    await page.waitForFunction(
      () => Number((globalThis as DashboardPage).document.getElementById("rate")?.textContent) > 0,
      {
        timeout: 3000,
      },
    );
    // Past the first token's expiry: a fresh one came from the page's server, and events still arrive.
    await Bun.sleep(Math.max(0, openedAt + 2500 - Date.now()));
    expect(dashboard.tokens?.issued).toBeGreaterThanOrEqual(2);
    await publishEvent(gateway, "orders", { order: 6, total: 60 });
    await page.waitForFunction(
      () => (globalThis as DashboardPage).document.getElementById("total")?.textContent === "6",
      { timeout: 8000 },
    );
    await page.waitForSelector('#status[data-state="live"]', { timeout: 5000 });
    // Refreshed in band: the same socket carried on.
    expect(
      Number(
        await page.$eval(
          "#status",
          (status) =>
            (status as unknown as { dataset: Record<string, string | undefined> }).dataset.refreshes,
        ),
      ),
    ).toBeGreaterThan(0);
    const screenshot = join(folder, `live-dashboard-${runtime}.png`);
    await page.screenshot({ path: screenshot as `${string}.png` });
    console.log(`live dashboard screenshot: ${screenshot}`);
    await page.close();
  });
});
