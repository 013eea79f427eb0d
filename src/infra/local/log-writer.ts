import { constants } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { mkdir, open, readdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { jsonString } from "../../domain/record.ts";
import type { Logger } from "../../log/logger.ts";
import { OccasionalLine } from "../../log/occasional-line.ts";
import { headersOf, type SinkMessage, SinkUnavailableError, type SinkWriter } from "../../ports/sink.ts";
import { LogInUseError, LogLock } from "./log-lock.ts";

export interface LocalLogOptions {
  dir: string;
  rotateBytes: number;
}

/** Names are padded to 6 digits and grow past 999999 (events-1000000): any width is read, by its number. */
const FILE_PATTERN = /^events-(\d{6,})\.ndjson$/;
const NEWLINE = 0x0a;
/** How much of a torn tail is read at a time, from the end, looking for the last whole line. */
const TAIL_CHUNK_BYTES = 64 * 1024;
/**
 * Appends, and reads (connect() reads the tail it may have to cut). With
 * O_DSYNC each write returns once its bytes are on disk, as a write then
 * fdatasync would: one system call and one trip to the runtime's I/O threads
 * per batch instead of two (each trip costs the event loop ~10-15 us on this
 * kind of machine). Where the platform has no O_DSYNC, each write is followed by datasync().
 */
const DSYNC = constants.O_DSYNC;
const OPEN_FLAGS =
  DSYNC === undefined ? "a+" : constants.O_RDWR | constants.O_APPEND | constants.O_CREAT | DSYNC;
/** How often a rotation that keeps failing is logged. */
const ROTATE_FAILURE_LOG_INTERVAL_MS = 60_000;

/**
 * The embedded default sink: an append-only NDJSON log on local disk, one line
 * per record ({topic, key, headers, value}), fsynced per batch so an
 * acknowledged batch survives a crash, and rotated by size.
 *
 * A batch is written whole or not at all: a short write (file-size limit, full
 * disk) is continued, and when the rest cannot be written the file is cut back
 * to its last whole line and the write rejects, so nothing is acknowledged
 * that is not in the log. A file that reached the file-size limit (EFBIG) is
 * followed by the next one and the batch written there once. A line torn by a crash mid-write is cut at start.
 * The folder is this writer's alone while it is open (LogLock).
 *
 * A file removed while open (its folder deleted, an `rm events-*`) still takes
 * writes that no one will ever read: each write checks its file is still
 * linked, and when it is not, makes the folder again and writes the batch to
 * the next file before it resolves. A rotation that fails (no inode left, the
 * folder gone) leaves the written batch acknowledged, appending to the
 * current file until the next file can be opened.
 */
export class LocalLogWriter implements SinkWriter {
  readonly kind = "local-log";
  private file: FileHandle | undefined;
  private lock: LogLock | undefined;
  /** Where the last whole line ends: what the file is cut back to after a failed write. */
  private fileBytes = 0;
  /** Set when cutting back failed: the next write tries again before appending anything. */
  private torn = false;
  private sequence = 1;
  /** The last write, which the next one waits for: batches of several topics never interleave their lines. */
  private lastWrite: Promise<void> = Promise.resolve();

  /** The file-size limit is logged once: every file from then on may reach it. */
  private sizeLimitWarned = false;
  private readonly rotateFailureLine = new OccasionalLine(ROTATE_FAILURE_LOG_INTERVAL_MS);

  constructor(
    private readonly options: LocalLogOptions,
    private readonly log?: Logger,
  ) {}

  /**
   * Takes the folder's lock (rejects with LogInUseError while another gateway
   * holds it), opens the newest log file, continuing its sequence after a
   * restart, and cuts a torn last line (one without its newline). Resolves
   * with how many bytes were cut.
   */
  /**
   * Makes the folder and takes its lock, for a process that writes beneath it
   * through others (the supervisor of workers, each writing its own
   * `worker-<n>/`): one gateway per folder holds for either way of running.
   */
  static async holdFolder(dir: string): Promise<LogLock> {
    await makeFolder(dir);
    return LogLock.acquire(dir);
  }

  async connect(): Promise<{ truncatedBytes: number }> {
    await makeFolder(this.options.dir);
    this.lock = await LogLock.acquire(this.options.dir);
    try {
      return await this.openNewest();
    } catch (error) {
      await this.close();
      throw error;
    }
  }

  private async openNewest(): Promise<{ truncatedBytes: number }> {
    this.sequence = newestSequence(await readdir(this.options.dir)) ?? 1;
    await this.openCurrent();
    const size = this.fileBytes;
    this.fileBytes = await this.lastLineEnd(size);
    if (this.fileBytes < size) await this.file?.truncate(this.fileBytes);
    return { truncatedBytes: size - this.fileBytes };
  }

  get currentPath(): string {
    return this.pathOf(this.sequence);
  }

  private pathOf(sequence: number): string {
    return join(this.options.dir, `events-${String(sequence).padStart(6, "0")}.ndjson`);
  }

  write(batch: SinkMessage[]): Promise<void> {
    const written = this.lastWrite.then(() => this.append(batch));
    this.lastWrite = written.catch(() => {});
    return written;
  }

  private async append(batch: SinkMessage[]): Promise<void> {
    const bytes = Buffer.from(lines(batch));
    try {
      this.lock?.assertHeld();
      try {
        await this.appendTo(this.file ?? (await this.reopen()), bytes);
      } catch (error) {
        if (!(await this.rotatedPastSizeLimit(error))) throw error;
        await this.appendTo(this.file as FileHandle, bytes);
      }
      if (this.file && (await this.file.stat()).nlink === 0) {
        this.log?.warn({ path: this.currentPath }, "local log: the file was removed; writing to a new one");
        // The next name: one a shipper has seen (and maybe removed) is never written again.
        this.sequence++;
        await this.appendTo(await this.reopen(), bytes);
      }
    } catch (error) {
      throw unwritable(error);
    }
    this.fileBytes += bytes.byteLength;
    if (this.fileBytes >= this.options.rotateBytes) await this.rotate();
  }

  /**
   * After a write refused with EFBIG (a per-process file-size limit,
   * `ulimit -f`, or FAT32's 4 GiB) and cut back whole: opens the next file, so
   * the log keeps taking records instead of refusing every write to a file that
   * cannot grow, a restart included (it reopens the newest). False when a new
   * file would not help (the current one holds nothing, or could not be cut
   * back) or cannot be opened: the write is refused.
   */
  private async rotatedPastSizeLimit(error: unknown): Promise<boolean> {
    if ((error as NodeJS.ErrnoException).code !== "EFBIG" || !this.file || this.fileBytes === 0 || this.torn)
      return false;
    if (!this.sizeLimitWarned) {
      this.sizeLimitWarned = true;
      this.log?.warn(
        { path: this.currentPath, bytes: this.fileBytes },
        "local log: the file reached the file-size limit; writing to a new one (LOCAL_LOG_ROTATE_BYTES is above the limit)",
      );
    }
    return this.rotate();
  }

  /** Appends `bytes` whole, or cuts `file` back to its last whole line and rejects. */
  private async appendTo(file: FileHandle, bytes: Buffer): Promise<void> {
    try {
      if (this.torn) {
        await file.truncate(this.fileBytes);
        this.torn = false;
      }
      // The file is opened for appending: each write lands at its end, after the part already written.
      for (let written = 0; written < bytes.byteLength; ) {
        const { bytesWritten } = await file.write(bytes, written, bytes.byteLength - written);
        if (bytesWritten <= 0)
          throw Object.assign(new Error("the local log accepted no bytes"), { code: "EIO" });
        written += bytesWritten;
      }
      if (DSYNC === undefined) await file.datasync();
    } catch (error) {
      await this.cutBack(file);
      throw error;
    }
  }

  /**
   * Makes the folder and its lock again (they were removed) and opens the
   * current file; until it can, the log stays closed and each write tries again.
   */
  private async reopen(): Promise<FileHandle> {
    const removed = this.file;
    this.file = undefined;
    await removed?.close().catch(() => {});
    // Closed (or never connected): the folder is no longer this writer's to make again.
    if (!this.lock) throw new Error("local log is not open");
    await makeFolder(this.options.dir);
    await this.lock.restore();
    this.torn = false;
    return this.openCurrent();
  }

  async close(): Promise<void> {
    await this.file?.close();
    this.file = undefined;
    await this.lock?.release();
    this.lock = undefined;
  }

  /** Cuts the file back to its last whole line; when that fails too, the next write tries first. */
  private async cutBack(file: FileHandle): Promise<void> {
    try {
      await file.truncate(this.fileBytes);
      this.torn = false;
    } catch {
      this.torn = true;
    }
  }

  /** Where the last whole line of the current file ends (its size when it ends with a newline). */
  private async lastLineEnd(size: number): Promise<number> {
    const file = this.file as FileHandle;
    const chunk = Buffer.alloc(TAIL_CHUNK_BYTES);
    for (let end = size; end > 0; ) {
      const start = Math.max(0, end - TAIL_CHUNK_BYTES);
      const { bytesRead } = await file.read(chunk, 0, end - start, start);
      const newline = chunk.subarray(0, bytesRead).lastIndexOf(NEWLINE);
      if (newline >= 0) return start + newline + 1;
      end = start;
    }
    return 0;
  }

  /**
   * Opens the next file, then closes the current one. When the next cannot be
   * opened, the current one stays open and takes the next writes: the batch
   * just written is on disk and is acknowledged; each write tries again.
   */
  private async rotate(): Promise<boolean> {
    let next: FileHandle | undefined;
    try {
      next = await open(this.pathOf(this.sequence + 1), OPEN_FLAGS);
      const size = (await next.stat()).size;
      const previous = this.file;
      this.file = next;
      this.fileBytes = size;
      this.sequence++;
      await previous?.close().catch(() => {});
      return true;
    } catch (error) {
      if (next && next !== this.file) await next.close().catch(() => {});
      const failures = this.rotateFailureLine.due();
      if (failures !== undefined)
        this.log?.warn(
          { err: error, path: this.currentPath, bytes: this.fileBytes, failures },
          "local log: cannot open the next file; appending to the current one",
        );
      return false;
    }
  }

  private async openCurrent(): Promise<FileHandle> {
    const file = await open(this.currentPath, OPEN_FLAGS);
    this.file = file;
    this.fileBytes = (await file.stat()).size;
    return file;
  }
}

/**
 * The highest sequence among log file names, compared as numbers: past
 * 999999 a name has 7 digits and sorts before events-999999 as text.
 */
export function newestSequence(names: Iterable<string>): number | undefined {
  let newest: number | undefined;
  for (const name of names) {
    const digits = FILE_PATTERN.exec(name)?.[1];
    if (digits === undefined) continue;
    const sequence = Number(digits);
    if (newest === undefined || sequence > newest) newest = sequence;
  }
  return newest;
}

/** The batch as log lines, one per record. */
function lines(batch: SinkMessage[]): string {
  let text = "";
  // Runs of records share their topic and headers: each is serialised once per run.
  let topic: string | undefined;
  let topicJson = "";
  let headers: SinkMessage["headers"] | undefined;
  let headersJson = "";
  for (const message of batch) {
    if (message.topic !== topic) {
      topic = message.topic;
      topicJson = JSON.stringify(topic);
    }
    if (message.headers !== headers) {
      headers = message.headers;
      headersJson = JSON.stringify(headers);
    }
    const recordHeadersJson =
      message.ownHeader === undefined ? headersJson : JSON.stringify(headersOf(message));
    text += `{"topic":${topicJson},"key":${jsonString(message.key)},"headers":${recordHeadersJson},"value":${oneLine(message.value)}}\n`;
  }
  return text;
}

/**
 * A JSON text on one line. A line break in it can only be whitespace between
 * tokens (in a string it is escaped), so a space stands for it: the same
 * value, numbers and strings byte for byte, and the log stays one record per
 * line (a client's pretty-printed `data` made one record span several).
 */
function oneLine(json: string): string {
  return json.includes("\n") || json.includes("\r") ? json.replace(LINE_BREAKS, " ") : json;
}
const LINE_BREAKS = /[\r\n]/g;

/**
 * mkdir -p, one level at a time: Node 20's mkdir(dir, { recursive: true })
 * never returns where mkdir answers ENOENT under a parent that exists (/proc,
 * /sys), which would hang the start instead of refusing LOCAL_LOG_DIR.
 */
async function makeFolder(dir: string): Promise<void> {
  try {
    await mkdir(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // Something in the way (a file) is found by opening what the folder should hold.
    if (code === "EEXIST") return;
    const parent = dirname(dir);
    if (code !== "ENOENT" || parent === dir) throw error;
    await makeFolder(parent);
    await mkdir(dir).catch((again: NodeJS.ErrnoException) => {
      if (again.code !== "EEXIST") throw again;
    });
  }
}

/** A write that could not complete: the log cannot take records (full disk, size limit, I/O error) until it can. */
function unwritable(error: unknown): SinkUnavailableError {
  // The folder taken by another gateway while its lock was removed: this one no longer writes there.
  const code =
    error instanceof LogInUseError ? "EBUSY" : ((error as NodeJS.ErrnoException | undefined)?.code ?? "EIO");
  return new SinkUnavailableError(code, { cause: error });
}
