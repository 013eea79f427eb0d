import { appendFile, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { FileLock, LockHeld } from "./file-lock.js";
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
  /** Writes what is asked, then lets the file go (`EventClient.close()` calls it). */
  close(): Promise<void>;
}

/**
 * A file that keeps an `EventClient`'s unsent records across restarts, for
 * Node and Bun: an append-only journal (`["+", id, line, key?]`, `["-", id]`), so a
 * crash loses at most the last write, compacted at load and when it grows.
 * One queue per file at a time: two would each compact it with only their own
 * records, erasing the other's. Another holder of `<path>.lock` (a live
 * process, or an open queue of this one) makes this throw; `close()` lets it go.
 */
export function fileQueue(path: string): FileQueue {
  let lock: FileLock | undefined;
  try {
    lock = new FileLock(path);
  } catch (error) {
    if (error instanceof LockHeld) throw new Error(`${path} ${error.message} (one queue per file)`);
    // Any other failure (a folder it cannot write, a file in the way) fails the load too,
    // which the client reports as kind "storage".
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
    // Once closed, the file may be another queue's: nothing more is written to it.
    add(added) {
      if (!closed) batcher.push({ add: added });
    },
    remove(ids) {
      if (!closed) batcher.push({ remove: ids });
    },
    flush: () => batcher.flush(),
    close: () => {
      closed ??= batcher.flush().then(() => lock?.release());
      return closed;
    },
  };
}
