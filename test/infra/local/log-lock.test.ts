import { afterEach, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { LOCK_FILE, LogInUseError, LogLock } from "../../../src/infra/local/log-lock.ts";
import { LocalLogWriter } from "../../../src/infra/local/log-writer.ts";

const FAST = { heartbeatMs: 50, staleMs: 400 };

let folder = "";
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
  await rm(folder, { recursive: true, force: true });
});

/** A process that runs (so its pid is alive) but holds no lock: a pid reused, or one in another namespace. */
function livePid(): number {
  const child = Bun.spawn(["sleep", "30"]);
  cleanups.push(() => child.kill());
  return child.pid;
}

const lockOf = (pid: number, host = hostname()) =>
  `${JSON.stringify({ pid, host, since: "2026-01-01T00:00:00.000Z" })}\n`;

test("a second writer of a folder is refused while the first holds it, and takes it once the first closed", async () => {
  folder = await mkdtemp(join(tmpdir(), "log-lock-"));
  const first = new LocalLogWriter({ dir: folder, rotateBytes: 1024 });
  await first.connect();
  expect(JSON.parse(await readFile(join(folder, LOCK_FILE), "utf8")).pid).toBe(process.pid);

  const second = new LocalLogWriter({ dir: folder, rotateBytes: 1024 });
  await expect(second.connect()).rejects.toBeInstanceOf(LogInUseError);

  await first.close();
  expect(existsSync(join(folder, LOCK_FILE))).toBe(false);
  await second.connect();
  await second.close();
});

test("the lock of a process that is gone (a crash, a SIGKILL) on this host is taken over at once", async () => {
  folder = await mkdtemp(join(tmpdir(), "log-lock-"));
  const child = Bun.spawn(["true"]);
  await child.exited;
  await writeFile(join(folder, LOCK_FILE), lockOf(child.pid));
  const started = Date.now();
  const lock = await LogLock.acquire(folder, FAST);
  expect(Date.now() - started).toBeLessThan(FAST.staleMs);
  expect(JSON.parse(await readFile(join(folder, LOCK_FILE), "utf8")).pid).toBe(process.pid);
  await lock.release();
});

test("a live holder that keeps touching its lock (another host, or a pid we cannot judge) is refused", async () => {
  folder = await mkdtemp(join(tmpdir(), "log-lock-"));
  const path = join(folder, LOCK_FILE);
  await writeFile(path, lockOf(livePid(), "another-host"));
  const heartbeat = setInterval(() => {
    const now = new Date();
    utimes(path, now, now).catch(() => {});
  }, FAST.heartbeatMs);
  cleanups.push(() => clearInterval(heartbeat));
  const error = await LogLock.acquire(folder, FAST).catch((failure: unknown) => failure);
  expect(error).toBeInstanceOf(LogInUseError);
  expect(String((error as Error).message)).toContain("on another-host");
});

test("a lock nobody touches for staleMs is taken over, though its pid runs (reused after a container restart)", async () => {
  folder = await mkdtemp(join(tmpdir(), "log-lock-"));
  await writeFile(join(folder, LOCK_FILE), lockOf(livePid()));
  const lock = await LogLock.acquire(folder, FAST);
  expect(JSON.parse(await readFile(join(folder, LOCK_FILE), "utf8")).pid).toBe(process.pid);
  await lock.release();
  expect(existsSync(join(folder, LOCK_FILE))).toBe(false);
});

test("the holder's heartbeat keeps its lock fresh, so another process waiting staleMs still sees it alive", async () => {
  folder = await mkdtemp(join(tmpdir(), "log-lock-"));
  const lock = await LogLock.acquire(folder, FAST);
  // As another host would see it: the pid cannot be asked, only the lock's age.
  const path = join(folder, LOCK_FILE);
  await writeFile(path, lockOf(process.pid, "another-host"));
  const { mtimeMs: before } = await Bun.file(path).stat();
  await Bun.sleep(FAST.heartbeatMs * 4);
  const { mtimeMs: after } = await Bun.file(path).stat();
  expect(after).toBeGreaterThan(before);
  await lock.release();
});

test("a lock file removed alone is written again by the holder's heartbeat", async () => {
  folder = await mkdtemp(join(tmpdir(), "log-lock-"));
  const path = join(folder, LOCK_FILE);
  const lock = await LogLock.acquire(folder, FAST);
  await rm(path);
  await Bun.sleep(FAST.heartbeatMs * 4);
  expect(JSON.parse(await readFile(path, "utf8")).pid).toBe(process.pid);
  await expect(LogLock.acquire(folder, FAST)).rejects.toBeInstanceOf(LogInUseError);
  await lock.release();
  expect(existsSync(path)).toBe(false);
});

test("a lock removed under its holder is written again by restore(); one another gateway wrote meanwhile is not overwritten", async () => {
  folder = await mkdtemp(join(tmpdir(), "log-lock-"));
  const path = join(folder, LOCK_FILE);
  const lock = await LogLock.acquire(folder, FAST);
  await rm(path);
  await lock.restore();
  expect(JSON.parse(await readFile(path, "utf8")).pid).toBe(process.pid);
  await lock.restore();

  await rm(path);
  await writeFile(path, lockOf(livePid()));
  await expect(lock.restore()).rejects.toBeInstanceOf(LogInUseError);
  await lock.release();
  // Released: the other's lock stays.
  expect(existsSync(path)).toBe(true);
});
