import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { appendFile, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { type Operation, type QueueStorage, type StoredRecord, WriteBatcher } from "./storage.js";

/** Journal lines past this many per live record (and past a floor) make the next write compact the file. */
const COMPACT_RATIO = 4;
const COMPACT_FLOOR = 1000;

/** Applies operations to an id → record map, keeping insertion order (the order records were enqueued). */
function apply(records: Map<string, StoredRecord>, operations: Operation[]): void {
  for (const operation of operations) {
    if ("add" in operation) for (const record of operation.add) records.set(record.id, record);
    else for (const id of operation.remove) records.delete(id);
  }
}

/** A journal line adding a record: `["+", id, line]`, or `["+", id, line, key]` once it was sent under a key. */
function added({ id, line, key }: StoredRecord): string {
  return JSON.stringify(key === undefined ? ["+", id, line] : ["+", id, line, key]);
}

/** Another live process holds the queue file. */
class QueueFileInUse extends Error {}

/** The lock files this process holds, removed when it exits. */
const heldLocks = new Set<string>();

function errorCode(error: unknown): string | undefined {
  return (error as { code?: string }).code;
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

function releaseLocks(): void {
  for (const lock of heldLocks) {
    try {
      if (readFileSync(lock, "utf8") === String(process.pid)) unlinkSync(lock);
    } catch {
      // Already gone, or taken over: nothing of ours to remove.
    }
  }
}

/**
 * Claims `<path>.lock` (holding this process's pid) for the queue file, or
 * throws when a live process holds it: two processes on one file would each
 * compact it with only their own records, erasing the other's. A lock whose
 * process is gone (killed) is taken over; this process may open the file again.
 */
function lockQueueFile(path: string): void {
  const lock = `${path}.lock`;
  mkdirSync(dirname(path), { recursive: true });
  // Written whole under another name, then linked: the lock never holds a partial pid.
  const mine = `${lock}.${process.pid}`;
  writeFileSync(mine, String(process.pid));
  try {
    for (;;) {
      try {
        linkSync(mine, lock);
        break;
      } catch (error) {
        if (errorCode(error) !== "EEXIST") throw error;
      }
      const owner = Number(readFileSync(lock, "utf8"));
      if (owner === process.pid) break;
      if (isAlive(owner))
        throw new QueueFileInUse(`${path} is in use by process ${owner} (one client per queue file)`);
      try {
        unlinkSync(lock);
      } catch (error) {
        if (errorCode(error) !== "ENOENT") throw error;
      }
    }
  } finally {
    unlinkSync(mine);
  }
  if (heldLocks.size === 0) process.once("exit", releaseLocks);
  heldLocks.add(lock);
}

/**
 * A file that keeps an `EventClient`'s unsent records across restarts, for
 * Node and Bun: an append-only journal (`["+", id, line, key?]`, `["-", id]`), so a
 * crash loses at most the last write, compacted at load and when it grows.
 * One client per file at a time: another process holding it (`<path>.lock`)
 * makes this throw.
 */
export function fileQueue(path: string): QueueStorage {
  try {
    lockQueueFile(path);
  } catch (error) {
    // Held by another process: not this client's file. Any other failure (a folder it cannot
    // write, a file in the way) fails the load too, which the client reports as kind "storage".
    if (error instanceof QueueFileInUse) throw error;
  }
  const records = new Map<string, StoredRecord>();
  let journalLines = 0;
  /**
   * A write failed (disk full, an I/O error, the folder gone): the file may lack
   * records the client still holds, or end in a partial line the next append
   * would run into, so the next write rewrites it whole from memory.
   */
  let rewrite = false;
  let loading: Promise<void> | undefined;

  const compact = async () => {
    const text = [...records.values()].map((record) => `${added(record)}\n`).join("");
    await writeFile(`${path}.tmp`, text);
    await rename(`${path}.tmp`, path);
    journalLines = records.size;
  };

  const load = () => {
    loading ??= (async () => {
      await mkdir(dirname(path), { recursive: true });
      let text = "";
      try {
        text = await readFile(path, "utf8");
      } catch (error) {
        if (errorCode(error) !== "ENOENT") throw error;
      }
      for (const entry of text.split("\n")) {
        if (entry === "") continue;
        try {
          const [op, id, line, key] = JSON.parse(entry) as [string, string, string?, string?];
          if (op === "+" && typeof line === "string")
            records.set(id, typeof key === "string" ? { id, line, key } : { id, line });
          else if (op === "-") records.delete(id);
        } catch {
          // A line cut short by a crash: what it said was never confirmed.
        }
      }
      await compact();
    })();
    return loading;
  };

  const batcher = new WriteBatcher(async (operations) => {
    await load();
    apply(records, operations);
    const lines: string[] = [];
    for (const operation of operations) {
      if ("add" in operation) for (const record of operation.add) lines.push(added(record));
      else for (const id of operation.remove) lines.push(JSON.stringify(["-", id]));
    }
    journalLines += lines.length;
    try {
      if (rewrite || (journalLines > COMPACT_FLOOR && journalLines > COMPACT_RATIO * records.size))
        await compact();
      else if (lines.length > 0) await appendFile(path, `${lines.join("\n")}\n`);
      rewrite = false;
    } catch (error) {
      rewrite = true;
      throw error;
    }
  });

  return {
    async load(): Promise<StoredRecord[]> {
      await load();
      return [...records.values()];
    },
    add: (added) => batcher.push({ add: added }),
    remove: (ids) => batcher.push({ remove: ids }),
    flush: () => batcher.flush(),
  };
}
