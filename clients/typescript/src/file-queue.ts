import { fstatSync, statSync } from "node:fs";
import { type FileHandle, mkdir, open, readFile, rename } from "node:fs/promises";
import { dirname } from "node:path";
import { FileLock, LockHeld, LockLost } from "./file-lock.js";
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

function errorCode(error: unknown): string | undefined {
  return (error as { code?: string }).code;
}

/** A `QueueStorage` in a file, which its owner closes to let another queue open the file. */
export interface FileQueue extends QueueStorage {
  /**
   * Writes what is asked, then lets the file go (`EventClient.close()` calls
   * it). A closed queue stays closed: its `load()` rejects and a write to it is
   * reported; open a new `fileQueue` for the next client.
   */
  close(): Promise<void>;
}

/**
 * A file that keeps an `EventClient`'s unsent records across restarts, for
 * Node and Bun: an append-only journal (`["+", id, line, key?]`, `["-", id]`), so a
 * crash loses at most the last write, compacted at load and when it grows.
 * One queue per file at a time: two would each compact it with only their own
 * records, erasing the other's. Another holder of `<path>.lock` (a live
 * process, or an open queue of this one) makes this throw; `close()` lets it go.
 * A queue whose lock was taken over (see FileLock) stops writing the file.
 * What keeps it from writing (the lock failed, was lost, the queue was closed)
 * is reported once through load()'s `report`, or by load() rejecting; the
 * client keeps its records in memory.
 */
export function fileQueue(path: string): FileQueue {
  let report: (error: unknown) => void = () => {};
  /** Why this queue no longer writes the file, once it does not. */
  let stopped: unknown;
  const stop = (error: unknown) => {
    if (stopped === undefined) report(error);
    stopped ??= error;
  };
  let lock: FileLock | undefined;
  /** Any other failure (a folder it cannot write, a folder in the way, no hard links): load() rejects with it. */
  let lockFailed: unknown;
  try {
    lock = new FileLock(path, stop);
  } catch (error) {
    if (error instanceof LockHeld) throw new Error(`${path} ${error.message} (one queue per file)`);
    lockFailed = error;
  }
  let closed: Promise<void> | undefined;
  const records = new Map<string, StoredRecord>();
  let journalLines = 0;
  /**
   * A write failed (disk full, an I/O error, the folder gone): the file may lack
   * records the client still holds, or end in a partial line the next append
   * would run into, so the next write rewrites it whole from memory.
   */
  let rewrite = false;
  let loading: Promise<void> | undefined;
  /**
   * The file as this queue last wrote it whole, which it appends to: not the
   * file at `path` by then. A holder paused between its lock check and an
   * append (its lock taken over meanwhile) appends to the file the new holder
   * replaced when it loaded, never to the new holder's.
   */
  let file: FileHandle | undefined;
  /**
   * Whether the file at `path` is not the one this queue writes: gone (its
   * folder emptied) or replaced (by a holder that lost the lock while paused
   * between its check and a compaction). Either way it is written whole again.
   */
  const replaced = () => {
    try {
      return statSync(path).ino !== fstatSync((file as FileHandle).fd).ino;
    } catch {
      return true;
    }
  };

  const compact = async () => {
    const text = [...records.values()].map((record) => `${added(record)}\n`).join("");
    const written = await open(`${path}.tmp`, "w");
    try {
      await written.writeFile(text);
      // Windows does not replace a file open in this process; without a handle, the next write compacts again.
      await file?.close();
      file = undefined;
      await rename(`${path}.tmp`, path);
    } catch (error) {
      await written.close();
      throw error;
    }
    file = written;
    journalLines = records.size;
  };

  const load = () => {
    loading ??= (async () => {
      if (lockFailed !== undefined) throw lockFailed;
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
      try {
        // Taken over before the first load (this process paused since it was made): the file is its new holder's.
        lock?.check();
      } catch (error) {
        if (!(error instanceof LockLost)) throw error;
        // Said once by the lock (stop); the file's records are the new holder's to send.
        records.clear();
        return;
      }
      await compact();
    })();
    return loading;
  };

  const batcher = new WriteBatcher(async (operations) => {
    await load();
    apply(records, operations);
    if (stopped !== undefined) return;
    const lines: string[] = [];
    for (const operation of operations) {
      if ("add" in operation) for (const record of operation.add) lines.push(added(record));
      else for (const id of operation.remove) lines.push(JSON.stringify(["-", id]));
    }
    journalLines += lines.length;
    try {
      // Looked at before the lock: a holder paused after its check finds the new holder's file replaced
      // by then, and must not rewrite it.
      const whole = rewrite || replaced();
      // Another process may have taken the lock (this one paused too long): then the file is its.
      lock?.check();
      if (whole || (journalLines > COMPACT_FLOOR && journalLines > COMPACT_RATIO * records.size))
        await compact();
      else if (lines.length > 0) await (file as FileHandle).appendFile(`${lines.join("\n")}\n`);
      rewrite = false;
    } catch (error) {
      // Said once by the lock (stop): nothing more is written.
      if (error instanceof LockLost) return;
      rewrite = true;
      throw error;
    }
  });

  /** Once closed, the file may be another queue's: nothing more is written to it. */
  const closedError = () =>
    new Error(`${path}: this fileQueue was closed (open a new one for the next client)`);
  return {
    async load(reportTo): Promise<StoredRecord[]> {
      if (reportTo) report = reportTo;
      if (closed) stopped ??= closedError();
      // What already keeps this queue from writing is said by the load failing.
      if (stopped !== undefined) throw stopped;
      await load();
      return [...records.values()];
    },
    add(added) {
      if (closed) stop(closedError());
      else batcher.push({ add: added });
    },
    remove(ids) {
      if (closed) stop(closedError());
      else batcher.push({ remove: ids });
    },
    flush: () => batcher.flush(),
    close: () => {
      closed ??= batcher.flush().then(async () => {
        try {
          // A file removed or replaced since the last write would leave the records nowhere once closed.
          if (stopped === undefined && (file === undefined ? rewrite : replaced())) {
            lock?.check();
            await compact();
          }
        } catch (error) {
          if (!(error instanceof LockLost)) throw error;
        } finally {
          // The handle goes before the lock: a new holder on Windows could not replace a file open here.
          await file?.close();
          file = undefined;
          lock?.release();
        }
      });
      return closed;
    },
  };
}
