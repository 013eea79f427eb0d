import { afterEach, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import {
  type DocumentRead,
  FAILURE_CHANGE_LOG_MS,
  FAILURE_REPEAT_LOG_MS,
  RefreshedDocument,
  readDocument,
} from "../../../src/infra/remote/document.ts";
import { waitUntil } from "../../support/wait.ts";

const log = pino({ level: "silent" });
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

test("a URL is read conditionally on its ETag: an unchanged document is a 304, not a download", async () => {
  const seen: Array<string | null> = [];
  const server = Bun.serve({
    port: 0,
    fetch(request) {
      seen.push(request.headers.get("if-none-match"));
      if (request.headers.get("if-none-match") === '"v1"') return new Response(null, { status: 304 });
      return new Response('{"a":1}', { headers: { etag: '"v1"' } });
    },
  });
  cleanups.push(() => server.stop(true));
  const url = `http://127.0.0.1:${server.port}/doc.json`;
  const first = (await readDocument(url, undefined, undefined)) as Exclude<DocumentRead, "not-modified">;
  expect(first).toEqual({ text: '{"a":1}', etag: '"v1"' });
  expect(await readDocument(url, first.etag, undefined)).toBe("not-modified");
  expect(seen).toEqual([null, '"v1"']);
});

test("a URL's user:password@ is sent as Basic credentials, percent-decoded, and not in the URL requested", async () => {
  const seen: Array<{ authorization: string | null; url: string }> = [];
  const server = Bun.serve({
    port: 0,
    fetch(request) {
      seen.push({ authorization: request.headers.get("authorization"), url: request.url });
      return new Response('{"a":1}');
    },
  });
  cleanups.push(() => server.stop(true));
  const read = await readDocument(
    `http://re%40der:p%3Ass@127.0.0.1:${server.port}/doc.json`,
    '"v1"',
    undefined,
  );
  expect(read).toEqual({ text: '{"a":1}', etag: undefined });
  expect(seen).toEqual([
    { authorization: `Basic ${btoa("re@der:p:ss")}`, url: `http://127.0.0.1:${server.port}/doc.json` },
  ]);
});

test("a URL that fails says which and why: refused, no answer (headers or body) within the time limit", async () => {
  const closed = Bun.serve({ port: 0, fetch: () => new Response("") });
  const closedUrl = `http://127.0.0.1:${closed.port}/doc.json`;
  closed.stop(true);
  await expect(readDocument(closedUrl, undefined, undefined)).rejects.toThrow(
    new RegExp(`^GET ${closedUrl}: .*ECONNREFUSED`),
  );

  const server = Bun.serve({
    port: 0,
    idleTimeout: 0,
    fetch(request) {
      if (new URL(request.url).pathname === "/headers") return new Promise<Response>(() => {});
      // The headers at once, then a body that never ends.
      return new Response(
        new ReadableStream({
          start: (controller) => controller.enqueue(new TextEncoder().encode('{"a":')),
        }),
      );
    },
  });
  cleanups.push(() => server.stop(true));
  for (const path of ["/headers", "/body"]) {
    const url = `http://127.0.0.1:${server.port}${path}`;
    const failure = await readDocument(url, undefined, undefined, 200).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(Error);
    expect((failure as Error).message).toBe(`GET ${url}: no answer within 200 ms`);
  }
});

/** A server of `/endless` (64 KiB chunks for as long as they are read) and `/sized/<n>` (n bytes). */
function documentServer() {
  const served = { endlessBytes: 0, endlessCancelled: false };
  const chunk = new Uint8Array(64 * 1024).fill(0x20);
  const server = Bun.serve({
    port: 0,
    idleTimeout: 0,
    fetch(request) {
      const path = new URL(request.url).pathname;
      if (path === "/endless")
        return new Response(
          new ReadableStream({
            type: "direct",
            async pull(controller) {
              while (!request.signal.aborted) {
                served.endlessBytes += chunk.byteLength;
                controller.write(chunk);
                await controller.flush();
                await Bun.sleep(1);
              }
              served.endlessCancelled = true;
            },
          }),
        );
      return new Response(" ".repeat(Number(path.slice("/sized/".length)) - 2).concat("{}"));
    },
  });
  cleanups.push(() => server.stop(true));
  return { url: (path: string) => `http://127.0.0.1:${server.port}${path}`, served };
}

test("a URL's document is read up to the size limit, and no further: a larger one is refused as it streams in", async () => {
  const { url, served } = documentServer();
  const limit = 1024 * 1024;
  expect(await readDocument(url(`/sized/${limit}`), undefined, undefined, 5000, limit)).toEqual({
    text: `${" ".repeat(limit - 2)}{}`,
    etag: undefined,
  });
  await expect(readDocument(url(`/sized/${limit + 1}`), undefined, undefined, 5000, limit)).rejects.toThrow(
    `GET ${url(`/sized/${limit + 1}`)}: larger than ${limit} bytes, the limit of a remote document`,
  );
  // A Content-Length over the limit is refused before the body is read (Bun.serve would set the true one).
  const declaring = createServer((socket) =>
    socket.once("data", () => socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${2 ** 30}\r\n\r\n{`)),
  );
  await new Promise<void>((resolve) => declaring.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => declaring.close());
  const declared = `http://127.0.0.1:${(declaring.address() as AddressInfo).port}/doc.json`;
  await expect(readDocument(declared, undefined, undefined, 5000, limit)).rejects.toThrow(
    `GET ${declared}: larger than ${limit} bytes`,
  );
  // An endless body: the read stops past the limit and the connection is dropped, not read to the timeout.
  await expect(readDocument(url("/endless"), undefined, undefined, 5000, limit)).rejects.toThrow(
    `GET ${url("/endless")}: larger than ${limit} bytes`,
  );
  await waitUntil(() => served.endlessCancelled, "the endless body cancelled");
  // What the server got out before it noticed: the limit, plus what sockets buffer on the way.
  expect(served.endlessBytes).toBeLessThan(limit + 8 * 1024 * 1024);
});

test("a file is read up to the size limit too: an endless one (/dev/zero) or a larger one is refused, not read whole", async () => {
  const folder = await mkdtemp(join(tmpdir(), "document-"));
  cleanups.push(() => rm(folder, { recursive: true, force: true }));
  const limit = 64 * 1024;
  const fits = join(folder, "fits.json");
  await writeFile(fits, `${" ".repeat(limit - 2)}{}`);
  expect(await readDocument(fits, undefined, undefined, 5000, limit)).toEqual({
    text: `${" ".repeat(limit - 2)}{}`,
  });
  const larger = join(folder, "larger.json");
  await writeFile(larger, `${" ".repeat(limit - 1)}{}`);
  await expect(readDocument(larger, undefined, undefined, 5000, limit)).rejects.toThrow(
    `${larger}: larger than ${limit} bytes, the limit of a schema or quota document`,
  );
  await expect(readDocument("/dev/zero", undefined, undefined, 5000, limit)).rejects.toThrow(
    `/dev/zero: larger than ${limit} bytes`,
  );
});

test("a refresh over the size limit keeps the last good copy, is counted and logged", async () => {
  const { url } = documentServer();
  const lines: Array<{ msg: string; err?: { message: string } }> = [];
  const logged = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line)) });
  let path = "/sized/100";
  let failures = 0;
  const document = new RefreshedDocument<number>({
    name: "test document",
    source: url("/"),
    refreshMs: 20,
    log: logged,
    onRefreshFailure: () => failures++,
    load: async () => {
      const read = await readDocument(url(path), undefined, undefined, 5000, 1000);
      return read === "not-modified" ? read : { value: read.text.length };
    },
  });
  cleanups.push(() => document.stop());
  await document.start();
  path = "/endless";
  await waitUntil(() => failures >= 2, "two failed refreshes");
  expect(document.value).toBe(100);
  expect(
    lines.find((line) => line.msg === "test document refresh failed; keeping the last good copy")?.err
      ?.message,
  ).toBe(`GET ${url("/endless")}: larger than 1000 bytes, the limit of a remote document`);
});

test("a refresh that fails keeps the last good copy and is counted; a good one replaces it", async () => {
  const folder = await mkdtemp(join(tmpdir(), "remote-document-"));
  cleanups.push(() => rm(folder, { recursive: true, force: true }));
  const file = join(folder, "doc.json");
  await writeFile(file, '{"version":1}');
  let failures = 0;
  const document = new RefreshedDocument<{ version: number }>({
    name: "test document",
    source: file,
    refreshMs: 20,
    log,
    onRefreshFailure: () => failures++,
    load: async () => {
      const read = await readDocument(file, undefined, undefined);
      if (read === "not-modified") return read;
      return { value: JSON.parse(read.text) };
    },
  });
  cleanups.push(() => document.stop());
  await document.start();
  expect(document.value).toEqual({ version: 1 });
  // Waited for, not slept on: each refresh reads the file, which a loaded machine can hold up past a
  // fixed 100 ms.
  await writeFile(file, "{broken");
  await waitUntil(() => failures > 0, "a failed refresh");
  expect(document.value).toEqual({ version: 1 });
  await writeFile(file, '{"version":2}');
  await waitUntil(() => document.value?.version === 2, "the good copy read");
});

test("the initial load rejects, so a gateway never starts on nothing", async () => {
  const document = new RefreshedDocument<unknown>({
    name: "test document",
    source: "/nonexistent/doc.json",
    refreshMs: 1000,
    log,
    load: async () => {
      const read = await readDocument("/nonexistent/doc.json", undefined, undefined);
      return read === "not-modified" ? read : { value: read.text };
    },
  });
  await expect(document.start()).rejects.toThrow();
  document.stop();
});

test("refreshes that keep failing are each counted but logged when they start, when the error changes and as a reminder, and their end once", async () => {
  const lines: Array<{ msg: string; failures?: number; err?: { message: string } }> = [];
  const logged = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line)) });
  let clock = 0;
  let reads = 0;
  let failures = 0;
  // Each refresh after the first load waits for `proceed`: one call, one refresh, at a known clock.
  let pending: ((failure: string | undefined) => void) | undefined;
  const document = new RefreshedDocument<number>({
    name: "test document",
    source: "test://document",
    refreshMs: 5,
    log: logged,
    now: () => clock,
    onRefreshFailure: () => failures++,
    load: async () => {
      reads++;
      if (reads > 1) {
        const failure = await new Promise<string | undefined>((resolve) => {
          pending = resolve;
        });
        if (failure !== undefined) throw new Error(failure);
      }
      return { value: reads };
    },
  });
  cleanups.push(() => document.stop());
  await document.start();
  const waiting = () => waitUntil(() => pending !== undefined, "a refresh", 10_000, 1);
  /** `count` refreshes with this outcome, the clock moving `stepMs` before each. */
  const refreshes = async (count: number, failure: string | undefined, stepMs = 1000) => {
    for (let run = 0; run < count; run++) {
      await waiting();
      clock += stepMs;
      const proceed = pending as (failure: string | undefined) => void;
      pending = undefined;
      proceed(failure);
    }
    await waiting(); // the next one has started: the last one's outcome is logged
  };
  const warnings = () =>
    lines.filter((line) => line.msg === "test document refresh failed; keeping the last good copy");
  const HTTP_503 = "GET test://document: HTTP 503";
  const NOT_JSON = "test://document: not JSON";

  await refreshes(30, HTTP_503);
  expect(failures).toBe(30);
  expect(warnings()).toHaveLength(1);
  expect(warnings()[0]?.failures).toBe(1);

  // Another error is said, but not more than once a minute however the errors alternate.
  await refreshes(1, NOT_JSON, FAILURE_CHANGE_LOG_MS);
  for (let run = 0; run < 10; run++) await refreshes(1, run % 2 === 0 ? HTTP_503 : NOT_JSON);
  expect(failures).toBe(41);
  expect(warnings().map((line) => line.err?.message)).toEqual([HTTP_503, NOT_JSON]);

  // The same error for long: a reminder with the count so far.
  await refreshes(1, NOT_JSON, FAILURE_REPEAT_LOG_MS);
  expect(warnings()).toHaveLength(3);
  expect(warnings()[2]?.failures).toBe(42);

  await refreshes(3, undefined);
  const recovered = lines.filter((line) => line.msg === "test document refresh works again");
  expect(recovered).toHaveLength(1);
  expect(recovered[0]?.failures).toBe(42);
  expect(document.value).toBe(reads - 1);

  // A new run of failures is said at once.
  await refreshes(1, HTTP_503);
  expect(warnings()).toHaveLength(4);
  expect(warnings()[3]?.failures).toBe(1);
});
