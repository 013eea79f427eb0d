import type { FileHandle } from "node:fs/promises";
import { mkdir, open, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { SinkMessage, SinkWriter } from "../../ports/sink.ts";

export interface LocalLogOptions {
  dir: string;
  rotateBytes: number;
}

const FILE_PATTERN = /^events-(\d{6})\.ndjson$/;

/**
 * The embedded default sink: an append-only NDJSON log on local disk, one line
 * per record ({topic, key, headers, value}), fsynced per batch so an
 * acknowledged batch survives a crash, and rotated by size.
 */
export class LocalLogWriter implements SinkWriter {
  readonly kind = "local-log";
  private file: FileHandle | undefined;
  private fileBytes = 0;
  private sequence = 0;

  constructor(private readonly options: LocalLogOptions) {}

  /** Opens the newest log file, continuing its sequence after a restart. */
  async connect(): Promise<void> {
    await mkdir(this.options.dir, { recursive: true });
    const existing = (await readdir(this.options.dir))
      .map((name) => FILE_PATTERN.exec(name)?.[1])
      .filter((sequence): sequence is string => sequence !== undefined)
      .map(Number);
    this.sequence = existing.length > 0 ? Math.max(...existing) : 0;
    await this.openCurrent();
  }

  get currentPath(): string {
    return join(this.options.dir, `events-${String(this.sequence).padStart(6, "0")}.ndjson`);
  }

  async write(batch: SinkMessage[]): Promise<void> {
    if (!this.file) throw new Error("local log is not open");
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
      text += `{"topic":${topicJson},"key":${JSON.stringify(message.key)},"headers":${headersJson},"value":${message.value}}\n`;
    }
    const bytes = Buffer.from(text);
    await this.file.write(bytes);
    await this.file.datasync();
    this.fileBytes += bytes.byteLength;
    if (this.fileBytes >= this.options.rotateBytes) await this.rotate();
  }

  async close(): Promise<void> {
    await this.file?.close();
    this.file = undefined;
  }

  private async rotate(): Promise<void> {
    await this.file?.close();
    this.sequence++;
    await this.openCurrent();
  }

  private async openCurrent(): Promise<void> {
    if (this.sequence === 0) this.sequence = 1;
    this.file = await open(this.currentPath, "a");
    this.fileBytes = (await this.file.stat()).size;
  }
}
