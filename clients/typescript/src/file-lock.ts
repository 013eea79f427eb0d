import { randomUUID } from "node:crypto";
import {
  closeSync,
  fstatSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  readlinkSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { hostname } from "node:os";
import { dirname } from "node:path";

/** A holder touches its lock this often while it is open... */
const REFRESH_MS = 2_000;
/** ...so a lock untouched for this long is stale, wherever its holder ran. */
export const STALE_MS = 10_000;
/** A process that started this long after a lock of an older client was written does not hold it. */
const REUSED_MARGIN_MS = 60_000;
/** A claim waits at most this long for another process breaking the same stale lock. */
const BREAK_WAIT_MS = 1_000;

/** Another live holder (a process, or another queue of this one) has the lock. */
export class LockHeld extends Error {}

/** Who wrote a lock: enough to tell, from anywhere, whether it still runs. */
interface Holder {
  pid: number;
  host: string;
  /** The kernel boot and pid namespace (Linux), else the host name: where `pid` means this process. */
  scope?: string;
  /** Start time of `pid` (clock ticks since boot, /proc/<pid>/stat): a reused pid has another. */
  start?: string;
  /** Random per lock: two locks never have the same. */
  token?: string;
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

/** When `pid` started (epoch ms, from /proc: boot time plus its start in 1/100 s), where that can be told. */
function startedAt(pid: number): number | undefined {
  const start = Number(procStat(pid)?.start);
  try {
    const boot = Number(/^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"))?.[1]);
    const at = boot * 1000 + start * 10;
    return Number.isFinite(at) ? at : undefined;
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
      // A lock of an older client: its pid alone.
    }
    return { holder: { pid: Number(text), host: "" }, touched };
  } finally {
    closeSync(fd);
  }
}

/**
 * Whether a lock's holder is gone. In this process's scope (same kernel boot
 * and pid namespace) its pid says so, with its start time against a reused
 * pid; from elsewhere (another container, another host) nothing can be asked,
 * so a lock its holder stopped touching for STALE_MS is stale. A lock written
 * by an older client (a bare pid, never touched) is stale once no process has its
 * pid, or the one that has it started after the lock was written.
 */
function isStale({ holder, touched }: { holder: Holder; touched: number }): boolean {
  const me = thisProcess();
  // A process with that pid that started well after the lock was written (the margin covers the
  // drift of the wall clock from the boot time) is another one: the pid was reused.
  if (holder.token === undefined)
    return !isAlive(holder.pid) || (startedAt(holder.pid) ?? 0) > touched + REUSED_MARGIN_MS;
  const untouched = Date.now() - touched > STALE_MS;
  if (holder.scope !== me.scope) return untouched;
  if (me.start === undefined) return untouched || !isAlive(holder.pid);
  const running = procStat(holder.pid);
  return running === undefined || running.start !== holder.start || running.state === "Z";
}

function describe({ pid, host, scope, token }: Holder): string {
  if (scope !== thisProcess().scope && token !== undefined)
    return `process ${pid} on ${host} (another host or container; taken over once untouched for ${STALE_MS / 1000} s)`;
  return pid === process.pid && token !== undefined
    ? "this process (close the other queue first)"
    : `process ${pid}`;
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
 * Links `mine` at `name`, breaking a stale file there. Returns false when a
 * live process holds `name`, a break file (see below); throws LockHeld when
 * one holds the lock itself. Breaking is atomic: of the processes that found
 * the same stale file, only the one that links `<lock>.break-<its token>`
 * removes it, and only if it is still that file (another may have replaced
 * it meanwhile); the others wait for that and look again. A breaker that died
 * mid-way leaves a break file that is stale in turn, broken the same way.
 */
function claim(mine: string, name: string, lock: string, deadline: number): boolean {
  for (;;) {
    try {
      linkSync(mine, name);
      return true;
    } catch (error) {
      if (errorCode(error) !== "EEXIST") throw error;
    }
    const found = readHolder(name);
    if (!found) continue;
    if (!isStale(found)) {
      if (name === lock) throw new LockHeld(`is in use by ${describe(found.holder)}`);
      return false;
    }
    const breaker = `${lock}.break-${found.holder.token ?? `pid-${found.holder.pid}`}`;
    if (claim(mine, breaker, lock, deadline)) {
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

/** The lock files this process holds, released when it exits. */
const held = new Set<FileLock>();

/**
 * `<path>.lock`, held by one `FileLock` at a time across processes,
 * containers and hosts sharing the folder: it names its holder (pid, host,
 * pid namespace, process start time, a random token) and is touched every
 * REFRESH_MS while held. Throws LockHeld when a live holder has it.
 */
export class FileLock {
  readonly #path: string;
  readonly #token = randomUUID();
  readonly #refresh: ReturnType<typeof setInterval>;

  constructor(path: string) {
    this.#path = `${path}.lock`;
    mkdirSync(dirname(this.#path), { recursive: true });
    // Written whole under a name of its own, then linked: the lock never holds a partial holder.
    const mine = `${this.#path}.new-${this.#token}`;
    writeFileSync(mine, JSON.stringify({ ...thisProcess(), token: this.#token } satisfies Holder));
    try {
      claim(mine, this.#path, this.#path, Date.now() + BREAK_WAIT_MS);
    } finally {
      unlinkSync(mine);
    }
    if (held.size === 0) process.on("exit", releaseAll);
    held.add(this);
    this.#refresh = setInterval(() => this.#touch(), REFRESH_MS);
    this.#refresh.unref?.();
  }

  #mine(): boolean {
    try {
      return readHolder(this.#path)?.holder.token === this.#token;
    } catch {
      return false;
    }
  }

  #touch(): void {
    if (!this.#mine()) return;
    try {
      const now = new Date();
      utimesSync(this.#path, now, now);
    } catch {
      // The folder went away meanwhile: nothing left to touch.
    }
  }

  release(): void {
    clearInterval(this.#refresh);
    held.delete(this);
    if (held.size === 0) process.off("exit", releaseAll);
    try {
      if (this.#mine()) unlinkSync(this.#path);
    } catch {
      // Already gone: nothing of ours to remove.
    }
  }
}

function releaseAll(): void {
  for (const lock of held) lock.release();
}
