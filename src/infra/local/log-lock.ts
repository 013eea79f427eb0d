import { fstatSync, statSync, unlinkSync } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { open, readFile, rename, stat, unlink } from "node:fs/promises";
import { hostname } from "node:os";
import { join, resolve } from "node:path";

export const LOCK_FILE = "gateway.lock";

export interface LogLockTiming {
  /** How often the holder touches its lock file. */
  heartbeatMs: number;
  /** A lock not touched for this long belongs to a gateway that is gone. */
  staleMs: number;
}

const LOG_LOCK_TIMING: LogLockTiming = { heartbeatMs: 1000, staleMs: 10_000 };

interface Holder {
  pid: number;
  host: string;
  since: string;
}

/** Folders this process holds: a second writer of one of them in this process is refused like another process. */
const held = new Set<string>();

/** Another gateway holds the folder: appending beside it would interleave two writers' cut-backs and rotations. */
export class LogInUseError extends Error {
  constructor(path: string, who: string) {
    super(`${path} is held by ${who}: one gateway per folder`);
    this.name = "LogInUseError";
  }
}

/**
 * One writer per log folder. Two gateways appending to the same file lose
 * acknowledged records: each cuts the file back to the end of its own last
 * whole line after a failed write (a full disk), which drops the other's lines
 * written since, and each rotates on its own count. So the folder holds a lock
 * file naming its holder, touched every `heartbeatMs`; a gateway that finds one
 * refuses to start while the holder lives. Without flock in Node or Bun, a
 * holder is judged gone when it is on this host and its pid is not running (a
 * crash, a SIGKILL: taken over at once), or when its lock has not been touched
 * for `staleMs` (another host sharing the disk, or another pid namespace: the
 * start waits that long at most).
 */
export class LogLock {
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  /** The restore under way: the heartbeat's and a write's would otherwise race to create the lock. */
  private restoring: Promise<void> | undefined;
  /** Set when a restore found the folder another gateway's (our lock removed, then taken): writes stop until ours again. */
  private lostTo: LogInUseError | undefined;
  private released = false;

  private constructor(
    private readonly path: string,
    private file: FileHandle,
    timing: LogLockTiming,
  ) {
    held.add(path);
    // A lock file removed alone (by hand, a cleanup job) is written again here, not only at the next
    // write that finds its log file gone: meanwhile another gateway could start on the folder.
    this.heartbeat = setInterval(() => {
      const now = new Date();
      this.restore()
        .then(() => this.file.utimes(now, now))
        .catch(() => {});
    }, timing.heartbeatMs);
    // The heartbeat never keeps the process alive: the drain decides when it ends.
    this.heartbeat.unref?.();
  }

  static async acquire(dir: string, timing: LogLockTiming = LOG_LOCK_TIMING): Promise<LogLock> {
    const path = join(resolve(dir), LOCK_FILE);
    if (held.has(path)) throw new LogInUseError(path, "this process");
    const created = await create(path);
    if (created) return new LogLock(path, created, timing);
    const holder = holderOf(await readFile(path, "utf8").catch(() => ""));
    if (!(await isGone(path, holder, timing)))
      throw new LogInUseError(
        path,
        holder ? `pid ${holder.pid} on ${holder.host} since ${holder.since}` : "another process",
      );
    // Taken over: written beside, then renamed over the stale lock, so no reader sees half a lock.
    const next = `${path}.${process.pid}`;
    const file = await open(next, "w");
    await writeHolder(file);
    await rename(next, path);
    return new LogLock(path, file, timing);
  }

  /**
   * Writes the lock again when it was removed (the folder deleted under the
   * running gateway, which makes it again): otherwise another gateway could
   * start on the folder. Rejects with LogInUseError when another holds it now.
   */
  /** Throws LogInUseError while another gateway holds the folder: appending beside it would lose records. */
  assertHeld(): void {
    if (this.lostTo) throw this.lostTo;
  }

  restore(): Promise<void> {
    this.restoring ??= this.restoreOnce().finally(() => {
      this.restoring = undefined;
    });
    return this.restoring;
  }

  private async restoreOnce(): Promise<void> {
    if (this.released) return;
    const ours = (await this.file.stat()).ino;
    const there = await stat(this.path).catch(() => undefined);
    if (there?.ino === ours) {
      this.lostTo = undefined;
      return;
    }
    const created = there ? undefined : await create(this.path);
    if (!created) {
      const holder = holderOf(await readFile(this.path, "utf8").catch(() => ""));
      this.lostTo = new LogInUseError(
        this.path,
        holder ? `pid ${holder.pid} on ${holder.host}` : "another process",
      );
      throw this.lostTo;
    }
    this.lostTo = undefined;
    const removed = this.file;
    this.file = created;
    await removed.close().catch(() => {});
  }

  /** For a holder that ends by process.exit without a drain (the supervisor of workers): removed as it exits. */
  releaseAtExit(): void {
    process.once("exit", () => {
      const ours = fstatSync(this.file.fd).ino;
      if (statSync(this.path, { throwIfNoEntry: false })?.ino === ours) unlinkSync(this.path);
    });
  }

  async release(): Promise<void> {
    this.released = true;
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    // A restore under way may be writing a new lock file: the one to remove is the one it leaves.
    await this.restoring?.catch(() => {});
    held.delete(this.path);
    // Only our own lock is removed: one taken over meanwhile (this process stalled past staleMs) is the new holder's.
    const ours = (await this.file.stat()).ino;
    await this.file.close();
    const there = await stat(this.path).catch(() => undefined);
    if (there?.ino === ours) await unlink(this.path).catch(() => {});
  }
}

/** Creates the lock file, or resolves undefined when one is there already. */
async function create(path: string): Promise<FileHandle | undefined> {
  let file: FileHandle;
  try {
    file = await open(path, "wx");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return undefined;
    throw error;
  }
  await writeHolder(file);
  return file;
}

/** What a full disk answers a write: see writeHolder. */
const FULL_DISK = new Set(["ENOSPC", "EDQUOT", "EFBIG"]);

/**
 * Names the holder in its lock. On a full disk the lock stays empty, judged
 * by its age alone, rather than the start failing: a full disk is a 503 until
 * it has room again, never a restart loop.
 */
async function writeHolder(file: FileHandle): Promise<void> {
  try {
    await file.writeFile(holderText());
  } catch (error) {
    if (!FULL_DISK.has((error as NodeJS.ErrnoException).code ?? "")) throw error;
  }
}

function holderText(): string {
  return `${JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() })}\n`;
}

function holderOf(text: string): Holder | undefined {
  try {
    const holder = JSON.parse(text) as Partial<Holder>;
    if (typeof holder.pid === "number" && typeof holder.host === "string")
      return { pid: holder.pid, host: holder.host, since: String(holder.since) };
  } catch {
    // Half a lock (a crash while writing it): judged by its age alone.
  }
  return undefined;
}

async function isGone(path: string, holder: Holder | undefined, timing: LogLockTiming): Promise<boolean> {
  if (holder?.host === hostname()) {
    // Our own pid in a lock this process does not hold: a previous run of a container's pid 1.
    if (holder.pid === process.pid || !running(holder.pid)) return true;
  }
  // Alive, or not ours to ask: alive while its lock is touched. Removed meanwhile: released.
  const touched = () =>
    stat(path).then(
      (stats) => stats.mtimeMs,
      () => undefined,
    );
  const first = await touched();
  if (first === undefined) return true;
  // A clock ahead of ours (another host) waits staleMs at most.
  const deadline = Math.min(first, Date.now()) + timing.staleMs;
  while (Date.now() < deadline) {
    await new Promise((wake) => setTimeout(wake, Math.min(timing.heartbeatMs, deadline - Date.now())));
    const now = await touched();
    if (now === undefined) return true;
    if (now !== first) return false;
  }
  return true;
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
