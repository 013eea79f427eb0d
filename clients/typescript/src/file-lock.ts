import { randomUUID } from "node:crypto";
import {
  closeSync,
  existsSync,
  fstatSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { hostname } from "node:os";
import { basename, dirname, join } from "node:path";

/** A holder touches its lock this often while it is open... */
const REFRESH_MS = 2_000;
/** ...so a lock untouched for this long is stale when its holder ran in another container or on another host. */
export const STALE_MS = 10_000;
/**
 * Without /proc (macOS, Windows) a live pid on this host holds its lock, unless the lock was untouched
 * this long: its holder is gone and another process has the pid now.
 */
export const UNPROVEN_STALE_MS = 60_000;
/** A claim waits at most this long for another process breaking the same stale lock. */
const BREAK_WAIT_MS = 1_000;

/** Another live holder (a process, or another queue of this one) has the lock. */
export class LockHeld extends Error {}

/** The lock was taken over by another process while this one held it (it stopped touching it too long). */
export class LockLost extends Error {}

/** Who wrote a lock: enough to tell, from anywhere, whether it still runs. */
interface Holder {
  pid: number;
  host: string;
  /** The kernel boot and pid namespace (Linux), else the host name: where `pid` means this process. */
  scope?: string;
  /** Start time of `pid` (clock ticks since boot, /proc/<pid>/stat): a reused pid has another. */
  start?: string;
  /** Random per lock: two locks never have the same. */
  token: string;
}

function errorCode(error: unknown): string | undefined {
  return (error as { code?: string }).code;
}

/** A process's state and start time from /proc/<pid>/stat; undefined where there is none (gone, or no /proc). */
function procStat(pid: number): { state?: string; start?: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: fields[0], start: fields[19] };
  } catch {
    return undefined;
  }
}

let self: Required<Omit<Holder, "token" | "start">> & { start?: string };

/** This process as a holder. Containers on one volume may all be pid 1: the scope tells them apart. */
function thisProcess(): typeof self {
  if (self) return self;
  let scope = `host ${hostname()}`;
  try {
    scope = `${readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim()} ${readlinkSync("/proc/self/ns/pid")}`;
  } catch {
    // No /proc (macOS, Windows): pids are the host's.
  }
  self = { pid: process.pid, host: hostname(), scope, start: procStat(process.pid)?.start };
  return self;
}

function isAlive(pid: number): boolean {
  if (!(pid > 0)) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return errorCode(error) === "EPERM";
  }
}

/** The holder of `path` and when it last touched it; undefined when there is no such file. */
function readHolder(path: string): { holder: Holder; touched: number } | undefined {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (error) {
    if (errorCode(error) === "ENOENT") return undefined;
    throw error;
  }
  try {
    // Both from one open file: another process may replace the file at `path` meanwhile.
    const touched = fstatSync(fd).mtimeMs;
    const text = readFileSync(fd, "utf8");
    try {
      const holder = JSON.parse(text) as Holder;
      if (typeof holder.pid === "number" && typeof holder.token === "string") return { holder, touched };
    } catch {
      // Not a lock this client wrote: judged as one from elsewhere, by when it was touched.
    }
    return { holder: { pid: 0, host: "", token: "" }, touched };
  } finally {
    closeSync(fd);
  }
}

/**
 * Whether a lock's holder is gone. In this process's scope (same kernel boot
 * and pid namespace) its pid says so, with its start time against a reused
 * pid. Without /proc (same host name) a live pid holds it, unless the lock was
 * untouched for UNPROVEN_STALE_MS (the pid reused). From elsewhere (another
 * container, another host) nothing can be asked, so a lock its holder stopped
 * touching for STALE_MS is stale.
 */
function isStale({ holder, touched }: { holder: Holder; touched: number }): boolean {
  const me = thisProcess();
  const untouched = Date.now() - touched;
  if (holder.scope !== me.scope) return untouched > STALE_MS;
  if (me.start === undefined) return untouched > UNPROVEN_STALE_MS || !isAlive(holder.pid);
  const running = procStat(holder.pid);
  return running === undefined || running.start !== holder.start || running.state === "Z";
}

function describe({ pid, host, scope }: Holder): string {
  if (scope !== thisProcess().scope)
    return `process ${pid} on ${host} (another host or container; taken over once untouched for ${STALE_MS / 1000} s)`;
  return pid === process.pid ? "this process (close the other queue first)" : `process ${pid}`;
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function unlinkIfThere(path: string): void {
  try {
    unlinkSync(path);
  } catch (error) {
    if (errorCode(error) !== "ENOENT") throw error;
  }
}

/**
 * Links `mine` (the lock `token` would be) at `name`, breaking a stale file
 * there. Returns false when a live process holds `name`, a break file (see
 * below); throws LockHeld when one holds the lock itself. Breaking is atomic:
 * of the processes that found the same stale file, only the one that links
 * `<lock>.break-<its token>` removes it, and only if it is still that file
 * (another may have replaced it meanwhile); the others wait for that and look
 * again. A breaker that died mid-way leaves a break file that is stale in
 * turn, broken the same way, or swept (`sweep`) once its lock is gone.
 */
function claim(mine: string, token: string, name: string, lock: string, deadline: number): boolean {
  for (;;) {
    try {
      linkSync(mine, name);
      return true;
    } catch (error) {
      if (errorCode(error) !== "EEXIST") throw error;
    }
    const found = readHolder(name);
    if (!found) continue;
    // NFS may answer EEXIST to a link it made (a retried request): the file there is ours.
    if (found.holder.token === token) return true;
    if (!isStale(found)) {
      if (name === lock) throw new LockHeld(`is in use by ${describe(found.holder)}`);
      return false;
    }
    const breaker = `${lock}.break-${found.holder.token}`;
    if (claim(mine, token, breaker, lock, deadline)) {
      try {
        // Judged again: its holder may have touched it meanwhile.
        const still = readHolder(name);
        if (still && still.holder.token === found.holder.token && isStale(still)) unlinkIfThere(name);
      } finally {
        unlinkIfThere(breaker);
      }
    } else if (Date.now() < deadline) {
      // Another process is breaking it: done within milliseconds, then the lock is looked at again.
      sleepSync(10);
    } else throw new LockHeld("is being taken over by another process");
  }
}

/**
 * Removes the break and new files of `lock` untouched for STALE_MS: those of
 * processes killed mid-claim (a claim takes at most BREAK_WAIT_MS), which
 * nothing else would remove.
 */
function sweep(lock: string): void {
  const folder = dirname(lock);
  for (const name of readdirSync(folder)) {
    if (!name.startsWith(`${basename(lock)}.break-`) && !name.startsWith(`${basename(lock)}.new-`)) continue;
    try {
      if (Date.now() - statSync(join(folder, name)).mtimeMs > STALE_MS) unlinkSync(join(folder, name));
    } catch (error) {
      if (errorCode(error) !== "ENOENT") throw error;
    }
  }
}

/** The lock files this process holds, released when it exits. */
const held = new Set<FileLock>();

/**
 * `<path>.lock`, held by one `FileLock` at a time across processes,
 * containers and hosts sharing the folder: it names its holder (pid, host,
 * pid namespace, process start time, a random token) and is touched every
 * REFRESH_MS while held. Throws LockHeld when a live holder has it. A holder
 * that stopped touching it for long enough (paused, suspended) may find it
 * taken over: `check()` throws LockLost then, and `onLost` is called once
 * when a touch finds it so.
 */
export class FileLock {
  /** The file the lock guards. */
  readonly #file: string;
  readonly #path: string;
  readonly #token = randomUUID();
  readonly #refresh: ReturnType<typeof setInterval>;
  readonly #onLost: (error: LockLost) => void;
  #lost: LockLost | undefined;

  constructor(path: string, onLost: (error: LockLost) => void = () => {}) {
    this.#file = path;
    this.#path = `${path}.lock`;
    this.#onLost = onLost;
    mkdirSync(dirname(this.#path), { recursive: true });
    sweep(this.#path);
    this.#claim();
    if (held.size === 0) process.on("exit", releaseAll);
    held.add(this);
    this.#refresh = setInterval(() => {
      try {
        this.check();
        const now = new Date();
        utimesSync(this.#path, now, now);
      } catch {
        // Lost (said once, by check), or the folder went away meanwhile: nothing to touch.
      }
    }, REFRESH_MS);
    this.#refresh.unref?.();
  }

  #claim(): void {
    // Written whole under a name of its own, then linked: the lock never holds a partial holder.
    const mine = `${this.#path}.new-${this.#token}`;
    writeFileSync(mine, JSON.stringify({ ...thisProcess(), token: this.#token } satisfies Holder));
    try {
      claim(mine, this.#token, this.#path, this.#path, Date.now() + BREAK_WAIT_MS);
    } finally {
      unlinkSync(mine);
    }
  }

  /**
   * Throws LockLost when the lock is no longer this one's: another process
   * holds it, or it is gone while the file it guards is there (another process
   * may have taken it, written the file and let it go). Gone with the file (its
   * folder removed), it is taken again; another process claiming it first
   * makes it lost too.
   */
  check(): void {
    if (this.#lost) throw this.#lost;
    const holder = readHolder(this.#path)?.holder;
    if (holder?.token === this.#token) return;
    if (holder === undefined && !existsSync(this.#file) && this.#claimedAgain()) return;
    this.#lost = new LockLost(
      `${this.#path} was taken over${holder ? ` by ${describe(holder)}` : ""} while this process did not touch it for ${STALE_MS / 1000} s or more (paused?): this queue no longer writes the file`,
    );
    clearInterval(this.#refresh);
    this.#onLost(this.#lost);
    throw this.#lost;
  }

  /** False when another process claimed the lock first: as lost as one taken over. */
  #claimedAgain(): boolean {
    try {
      this.#claim();
      return true;
    } catch (error) {
      if (error instanceof LockHeld) return false;
      throw error;
    }
  }

  release(): void {
    clearInterval(this.#refresh);
    held.delete(this);
    if (held.size === 0) process.off("exit", releaseAll);
    try {
      if (readHolder(this.#path)?.holder.token === this.#token) unlinkSync(this.#path);
    } catch {
      // Already gone: nothing of ours to remove.
    }
  }
}

function releaseAll(): void {
  for (const lock of held) lock.release();
}
