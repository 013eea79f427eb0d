import { afterEach, expect, test } from "bun:test";
import { constants, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, rmdir, stat, unlink, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { LOCK_FILE } from "../../../src/infra/local/log-lock.ts";
import { LocalLogWriter, newestSequence } from "../../../src/infra/local/log-writer.ts";

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

test("a torn last line (no newline: a crash mid-write) is cut at start, whole lines are kept", async () => {
  folder = await mkdtemp(join(tmpdir(), "local-log-"));
  const path = join(folder, "events-000001.ndjson");
  const whole = `${JSON.stringify({ value: { n: 1 } })}\n${JSON.stringify({ value: { n: 2 } })}\n`;
  await writeFile(path, `${whole}{"topic":"events","key":"ac`);
  const writer = new LocalLogWriter({ dir: folder, rotateBytes: 1 << 20 });
  expect((await writer.connect()).truncatedBytes).toBe(`{"topic":"events","key":"ac`.length);
  await writer.write([message(3)]);
  await writer.close();
  const lines = (await readFile(path, "utf8")).split("\n");
  expect(lines.pop()).toBe("");
  expect(lines.map((line) => JSON.parse(line).value.n)).toEqual([1, 2, 3]);

  // A file with no whole line at all is emptied; a clean file is left alone.
  await writeFile(path, '{"topic"');
  const again = new LocalLogWriter({ dir: folder, rotateBytes: 1 << 20 });
  expect((await again.connect()).truncatedBytes).toBe('{"topic"'.length);
  await again.close();
  expect((await stat(path)).size).toBe(0);
});

/** The `n` of every line of `file`, in order. */
const loggedIn = async (file: string) =>
  (await readFile(file, "utf8"))
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line).value.n as number);

test("a folder deleted under the writer is made again, lock included, and the write lands there: none is acknowledged into a removed file", async () => {
  folder = await mkdtemp(join(tmpdir(), "local-log-"));
  const dir = join(folder, "log");
  const writer = new LocalLogWriter({ dir, rotateBytes: 1 << 20 });
  await writer.connect();
  await writer.write([message(1)]);
  await rm(dir, { recursive: true });
  await writer.write([message(2)]);
  await writer.write([message(3)]);
  // The next name in the sequence: a name once removed is not written again.
  expect((await readdir(dir)).sort()).toEqual(["events-000002.ndjson", LOCK_FILE]);
  expect(await loggedIn(writer.currentPath)).toEqual([2, 3]);
  // The lock is back: a second gateway is still refused the folder.
  expect(JSON.parse(await readFile(join(dir, LOCK_FILE), "utf8")).pid).toBe(process.pid);
  await expect(new LocalLogWriter({ dir, rotateBytes: 1 << 20 }).connect()).rejects.toThrow(
    "one gateway per folder",
  );

  // Only the current file removed (`rm events-*`).
  await unlink(writer.currentPath);
  await writer.write([message(4)]);
  expect(await loggedIn(join(dir, "events-000003.ndjson"))).toEqual([4]);
  await writer.close();
});

test("a writer whose lock was removed and taken by another gateway refuses writes (EBUSY) until the folder is its own again", async () => {
  folder = await mkdtemp(join(tmpdir(), "local-log-"));
  const writer = new LocalLogWriter({ dir: folder, rotateBytes: 1 << 20 });
  await writer.connect();
  await writer.write([message(1)]);
  // Removed by hand, then written by another gateway before the heartbeat (every second) wrote ours again.
  const sleeper = Bun.spawn(["sleep", "30"]);
  const lock = join(folder, LOCK_FILE);
  await rm(lock);
  await writeFile(
    lock,
    `${JSON.stringify({ pid: sleeper.pid, host: hostname(), since: "2026-01-01T00:00:00.000Z" })}\n`,
  );
  await Bun.sleep(1200);
  expect(
    await writer.write([message(2)]).then(
      () => "written",
      (error: { sinkCode?: string }) => error.sinkCode,
    ),
  ).toBe("EBUSY");
  // That gateway gone (its lock with it): the heartbeat takes the folder back, and writes go on.
  sleeper.kill();
  await rm(lock);
  await Bun.sleep(1200);
  await writer.write([message(3)]);
  expect(await loggedIn(writer.currentPath)).toEqual([1, 3]);
  await writer.close();
});

test("a rotation that cannot open the next file acknowledges the written batch and keeps appending until it can", async () => {
  folder = await mkdtemp(join(tmpdir(), "local-log-"));
  // A folder where the next file would go: opening it fails, as it would with no inode left.
  const blocked = join(folder, "events-000002.ndjson");
  const writer = new LocalLogWriter({ dir: folder, rotateBytes: 1024 });
  await writer.connect();
  await mkdir(blocked);
  const big = (n: number) => ({ ...message(n), value: JSON.stringify({ n, pad: "x".repeat(1024) }) });
  await writer.write([big(1)]);
  await writer.write([big(2)]);
  expect(await loggedIn(join(folder, "events-000001.ndjson"))).toEqual([1, 2]);

  await rmdir(blocked);
  await writer.write([big(3)]);
  await writer.write([message(4)]);
  await writer.close();
  expect(await loggedIn(join(folder, "events-000001.ndjson"))).toEqual([1, 2, 3]);
  expect(await loggedIn(blocked)).toEqual([4]);
});

test("a file at the file-size limit (EFBIG) is followed by the next one, a restart included: every acknowledged record is logged once, no torn line", async () => {
  folder = await mkdtemp(join(tmpdir(), "local-log-"));
  // The newest file already at the limit of 4096 bytes, one whole line, as a previous run left it.
  const prefix = '{"topic":"events","key":"k","headers":{},"value":{"n":-1,"pad":"';
  const suffix = '"}}\n';
  await writeFile(
    join(folder, "events-000001.ndjson"),
    prefix + "x".repeat(4096 - prefix.length - suffix.length) + suffix,
  );
  const script = new URL("./append-under-size-limit.ts", import.meta.url).pathname;
  // 4 blocks of 1024 bytes (bash counts in KiB): the limit falls inside batches, so writes are short and then refused (EFBIG).
  const child = Bun.spawn(
    ["bash", "-c", `ulimit -f 4; exec "$0" "$1" "$2"`, process.execPath, script, folder],
    { stdout: "pipe", stderr: "pipe" },
  );
  const [code, out, err] = await Promise.all([
    child.exited,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  expect(err).toBe("");
  expect(code).toBe(0);
  const result = JSON.parse(out) as {
    acknowledged: number[];
    refused: { name: string; code: string; first: number }[];
    warnings: string[];
  };
  // Only the batch larger than a whole file is refused: 200 records before it, 1 after.
  expect(result.refused).toEqual([{ name: "SinkUnavailableError", code: "EFBIG", first: 200 }]);
  expect(result.acknowledged).toEqual([...Array.from({ length: 200 }, (_, n) => n), 250]);
  expect(result.warnings.filter((line) => line.includes("file-size limit"))).toHaveLength(1);
  const files = (await readdir(folder)).filter((name) => name.endsWith(".ndjson")).sort();
  expect(files.length).toBeGreaterThan(5);
  const logged: number[] = [];
  for (const file of files) {
    const text = await readFile(join(folder, file), "utf8");
    expect(text.length).toBeLessThanOrEqual(4096);
    if (text === "") continue;
    expect(text.endsWith("\n")).toBe(true);
    for (const line of text.split("\n").slice(0, -1)) logged.push(JSON.parse(line).value.n);
  }
  expect(logged).toEqual([-1, ...result.acknowledged]);
});

test.skipIf(process.platform !== "linux")(
  "every write is durable when it resolves: the log is open with O_DSYNC (no separate fdatasync)",
  async () => {
    folder = await mkdtemp(join(tmpdir(), "local-log-"));
    const writer = new LocalLogWriter({ dir: folder, rotateBytes: 1 << 20 });
    await writer.connect();
    await writer.write([message(1)]);
    // The open file's flags as the kernel holds them (octal), found by its path among this process's descriptors.
    const fd = readdirSync("/proc/self/fd").find((entry) => {
      try {
        return readlinkSync(`/proc/self/fd/${entry}`) === writer.currentPath;
      } catch {
        return false;
      }
    });
    const flags = Number.parseInt(
      /^flags:\s+(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"))?.[1] ?? "0",
      8,
    );
    await writer.close();
    expect(fd).toBeDefined();
    expect(flags & constants.O_DSYNC).toBe(constants.O_DSYNC);
    expect(flags & constants.O_APPEND).toBe(constants.O_APPEND);
  },
);

test("the sequence goes on past 999999: a restart continues after events-1000000, not in events-999999", async () => {
  folder = await mkdtemp(join(tmpdir(), "local-log-"));
  await writeFile(join(folder, "events-999999.ndjson"), "");
  const big = (n: number) => ({ ...message(n), value: JSON.stringify({ n, pad: "x".repeat(1024) }) });
  let writer = new LocalLogWriter({ dir: folder, rotateBytes: 1024 });
  await writer.connect();
  await writer.write([big(1)]);
  await writer.write([message(2)]);
  await writer.close();
  writer = new LocalLogWriter({ dir: folder, rotateBytes: 1024 });
  await writer.connect();
  expect(writer.currentPath).toBe(join(folder, "events-1000000.ndjson"));
  await writer.write([message(3)]);
  await writer.close();
  expect(await loggedIn(join(folder, "events-999999.ndjson"))).toEqual([1]);
  expect(await loggedIn(join(folder, "events-1000000.ndjson"))).toEqual([2, 3]);
});

test("newestSequence compares file names by their number, of any width, and ignores other files", () => {
  expect(newestSequence(["events-1000000.ndjson", "events-999999.ndjson", "events-000002.ndjson"])).toBe(
    1000000,
  );
  expect(
    newestSequence(["gateway.lock", "events-12.ndjson", "events-000003.ndjson.gz", "worker-1"]),
  ).toBeUndefined();
  expect(newestSequence(["events-000007.ndjson"])).toBe(7);
});

// Found in the SPEC audit: a client's pretty-printed `data` is forwarded as sent, so its line breaks
// made one record span several lines of the log, which line-by-line readers could not parse.
test("a value with line breaks between its tokens is one line, with the same value, numbers and strings as sent", async () => {
  folder = await mkdtemp(join(tmpdir(), "local-log-"));
  const writer = new LocalLogWriter({ dir: folder, rotateBytes: 1 << 20 });
  await writer.connect();
  const value = '{"data":{\r\n  "big": 12345678901234567890.10,\n  "text": "a\\nb\\r"\r}}';
  await writer.write([{ ...message(0), value }, message(1)]);
  await writer.close();
  const lines = (await readFile(join(folder, "events-000001.ndjson"), "utf8")).split("\n");
  expect(lines.pop()).toBe("");
  expect(lines.length).toBe(2);
  expect(lines[0]).toContain('"big": 12345678901234567890.10,');
  expect(JSON.parse(lines[0] as string).value).toEqual(JSON.parse(value));
  expect(JSON.parse(lines[1] as string).value).toEqual({ n: 1 });
});
