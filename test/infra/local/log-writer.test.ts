import { afterEach, expect, test } from "bun:test";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalLogWriter } from "../../../src/infra/local/log-writer.ts";

let folder = "";
afterEach(async () => {
  await rm(folder, { recursive: true, force: true });
});

const message = (n: number) => ({
  topic: "events",
  key: "acme",
  value: JSON.stringify({ n }),
  headers: { tenant: "acme" },
});

test("appends one NDJSON line per record, rotates by size, and continues the sequence after a restart", async () => {
  folder = await mkdtemp(join(tmpdir(), "local-log-"));
  const writer = new LocalLogWriter({ dir: folder, rotateBytes: 1024 });
  await writer.connect();
  for (let batch = 0; batch < 10; batch++) await writer.write([message(batch * 2), message(batch * 2 + 1)]);
  await writer.close();
  const files = (await readdir(folder)).sort();
  expect(files.length).toBeGreaterThan(1);
  expect(files[0]).toBe("events-000001.ndjson");

  const restarted = new LocalLogWriter({ dir: folder, rotateBytes: 1024 });
  await restarted.connect();
  await restarted.write([message(20)]);
  await restarted.close();

  const lines: Array<{ topic: string; key: string; headers: Record<string, string>; value: { n: number } }> =
    [];
  for (const file of (await readdir(folder)).sort()) {
    for (const line of (await readFile(join(folder, file), "utf8")).split("\n"))
      if (line) lines.push(JSON.parse(line));
  }
  expect(lines.map((line) => line.value.n)).toEqual(Array.from({ length: 21 }, (_, i) => i));
  expect(lines[0]).toMatchObject({ topic: "events", key: "acme", headers: { tenant: "acme" } });
});
