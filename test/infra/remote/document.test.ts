import { afterEach, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { type DocumentRead, RefreshedDocument, readDocument } from "../../../src/infra/remote/document.ts";

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
  await writeFile(file, "{broken");
  await Bun.sleep(100);
  expect(document.value).toEqual({ version: 1 });
  expect(failures).toBeGreaterThan(0);
  await writeFile(file, '{"version":2}');
  await Bun.sleep(100);
  expect(document.value).toEqual({ version: 2 });
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
