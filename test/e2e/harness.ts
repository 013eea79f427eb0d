import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { debianTreeCommand } from "../support/debian-tree.ts";
import { killGroup, spawnGroup } from "../support/processes.ts";
import { TEST_SECRET, token } from "../support/tokens.ts";

export { freePort } from "../support/ports.ts";

/** node24: the node24 container target's Node and node_modules, in a Debian 13 chroot (test/support/debian-tree.ts). */
export type Runtime = "node" | "bun" | "node24";
/** The runtimes every e2e test runs on; EDGE_GATEWAY_E2E_RUNTIMES (say, "node24") runs them on others. */
export const RUNTIMES = (process.env.EDGE_GATEWAY_E2E_RUNTIMES?.split(",") ?? ["node", "bun"]) as Runtime[];

const ROOT = new URL("../..", import.meta.url).pathname;

export interface RunningGateway {
  runtime: Runtime;
  port: number;
  url: string;
  wsUrl: string;
  /** Every JSON log line the process wrote so far. */
  logs: Array<Record<string, unknown>>;
  /** Everything the process wrote on stderr, once it has exited (the gateway logs on stdout only). */
  stderr: Promise<string>;
  process: Subprocess<"ignore", "pipe", "pipe">;
  /**
   * Sends a signal to the gateway's main process and resolves with its exit
   * code once its log lines are all in `logs`; SIGKILL kills its whole family
   * (the workers of a WORKERS supervisor too) and resolves once none of it is left.
   */
  stop(signal?: NodeJS.Signals): Promise<number>;
}

function command(runtime: Runtime, root: string): string[] {
  const nodeArgs = ["--enable-source-maps", "--max-semi-space-size=64", `${root}dist/main.js`];
  if (runtime === "node") return ["node", ...nodeArgs];
  if (runtime === "node24") return debianTreeCommand(nodeArgs);
  return [process.execPath, `${root}src/main.ts`];
}

/**
 * Spawns the real gateway (built JS on Node with uWebSockets.js, or the
 * TypeScript entry on Bun) on an ephemeral port and waits for its "listening" log line.
 */
export async function startGateway(
  runtime: Runtime,
  env: Record<string, string> = {},
  /** Another checkout to run (a benchmark's "before"), its path ending in `/`; this one by default. */
  root = ROOT,
): Promise<RunningGateway> {
  const logDir = ownLogDir();
  const child = spawnGroup(command(runtime, root), {
    cwd: root,
    env: {
      ...process.env,
      HOST: "127.0.0.1",
      PORT: "0",
      DRAIN_DELAY_MS: "200",
      DRAIN_TIMEOUT_MS: "10000",
      JWT_SECRET: TEST_SECRET,
      LOCAL_LOG_DIR: logDir,
      ...env,
    },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  child.exited.then(() => rmSync(logDir, { recursive: true, force: true }));
  const logs: Array<Record<string, unknown>> = [];
  const stderr = new Response(child.stderr).text();
  let linesRead: Promise<void> = Promise.resolve();
  const port = await new Promise<number>((resolve, reject) => {
    // One that never says "listening" is killed with everything it started, not left to the runner's exit.
    const timer = setTimeout(() => {
      killGroup(child).finally(() =>
        reject(new Error(`${runtime} gateway did not start:\n${JSON.stringify(logs)}`)),
      );
    }, 20_000);
    linesRead = readLines(child.stdout, (line) => {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        if (entry.msg === "listening") {
          clearTimeout(timer);
          resolve(entry.port as number);
        }
      } catch {
        logs.push({ raw: line });
      }
    });
    child.exited.then(async (code) => {
      clearTimeout(timer);
      reject(new Error(`${runtime} gateway exited with ${code}: ${await stderr}`));
    });
  });
  return {
    runtime,
    port,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}/v1/ws`,
    logs,
    stderr,
    process: child,
    stop: async (signal = "SIGTERM") => {
      if (signal === "SIGKILL") await killGroup(child);
      else if (child.exitCode === null) child.kill(signal);
      const code = await child.exited;
      // Its exit can be seen before its last lines are read from the pipe (the drain's report, say):
      // read to the end, or for a moment if something it started holds the pipe open.
      await Promise.race([linesRead, Bun.sleep(2000)]);
      return code;
    },
  };
}

/**
 * A folder of its own for a gateway's embedded log, used unless the test names
 * one: one gateway per folder (a second is refused), and test files run side by side.
 */
function ownLogDir(): string {
  return mkdtempSync(join(tmpdir(), "e2e-log-"));
}

async function readLines(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of stream) {
    pending += decoder.decode(chunk, { stream: true });
    let newline = pending.indexOf("\n");
    while (newline >= 0) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      if (line !== "") onLine(line);
      newline = pending.indexOf("\n");
    }
  }
}

/**
 * Runs the gateway command with an environment it should refuse and returns
 * its exit code and output. One still running after `timeoutMs` is killed and
 * reported with code -1. `whileRunning` gets the process as soon as it is
 * spawned (to signal it at some point of its start or run); its failure is the run's.
 */
export async function runUntilExit(
  runtime: Runtime,
  env: Record<string, string>,
  timeoutMs = 20_000,
  whileRunning?: (child: Subprocess) => Promise<void>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const logDir = ownLogDir();
  const child = spawnGroup(command(runtime, ROOT), {
    cwd: ROOT,
    env: { ...process.env, LOCAL_LOG_DIR: logDir, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child);
  }, timeoutMs);
  // A failed `whileRunning` is reported once the process is gone (killed), with everything cleaned up.
  let failure: { error: unknown } | undefined;
  const [exitCode, stdout, stderr] = await Promise.all([
    child.exited,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    whileRunning?.(child).catch((error: unknown) => {
      failure = { error };
      return killGroup(child);
    }),
  ]);
  clearTimeout(timer);
  await killGroup(child);
  rmSync(logDir, { recursive: true, force: true });
  if (failure) throw failure.error;
  return { code: timedOut ? -1 : exitCode, stdout, stderr };
}

/** A WebSocket client that queues every frame for assertions. */
export class TestSocket {
  readonly frames: Array<Record<string, unknown>> = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: Array<() => void> = [];
  readonly socket: WebSocket;

  constructor(url: string, options?: { headers?: Record<string, string> }) {
    this.socket = new WebSocket(url, options as unknown as string[]);
    this.socket.onmessage = (event) => {
      this.frames.push(JSON.parse(String(event.data)));
      for (const wake of this.waiters.splice(0)) wake();
    };
    this.closed = new Promise((resolve) => {
      this.socket.onclose = (event) => {
        resolve({ code: event.code, reason: event.reason });
        for (const wake of this.waiters.splice(0)) wake();
      };
    });
  }

  opened(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.socket.readyState === WebSocket.OPEN) resolve();
      this.socket.onopen = () => resolve();
      this.socket.onerror = () => reject(new Error("websocket failed to open"));
    });
  }

  send(frame: unknown): void {
    this.socket.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  /** Waits for the first frame (not yet consumed) matching `predicate`, and consumes frames up to it. */
  async next(predicate: (frame: Record<string, unknown>) => boolean = () => true, timeoutMs = 5000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.frames.findIndex(predicate);
      if (index >= 0) return this.frames.splice(0, index + 1)[index] as Record<string, unknown>;
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`no matching frame within ${timeoutMs} ms; got ${JSON.stringify(this.frames)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.socket.close();
  }
}

/** A socket signed in as `tenant` with the subscribe scope (and `extra` claims), past its `connected` frame. */
export async function connectSubscriber(
  gateway: RunningGateway,
  tenant = "acme",
  extra: Parameters<typeof token>[2] = {},
): Promise<TestSocket> {
  const socket = new TestSocket(`${gateway.wsUrl}?token=${await token(tenant, ["subscribe"], extra)}`);
  await socket.opened();
  await socket.next((frame) => frame.type === "connected");
  return socket;
}

/** Sends one `click` event to `POST /v1/events` as tenant acme (with `headers` besides the token's): the answer. */
export async function ingestClick(
  gateway: RunningGateway,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<Response> {
  return fetch(`${gateway.url}/v1/events`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${await token("acme", ["ingest"])}`,
      "content-type": "application/json",
      ...headers,
    },
    body: JSON.stringify({ type: "click", data: { element: "x" } }),
    ...(signal === undefined ? {} : { signal }),
  });
}

/** Publishes `data` on `channel` as `tenant` through `POST /v1/publish`, expecting its 202. */
export async function publishEvent(
  gateway: RunningGateway,
  channel: string,
  data: unknown,
  tenant = "acme",
): Promise<void> {
  const response = await fetch(`${gateway.url}/v1/publish`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${await token(tenant, ["publish"])}`,
      "content-type": "application/json",
    },
    body: JSON.stringify({ channel, data }),
  });
  if (response.status !== 202)
    throw new Error(`publish answered ${response.status}: ${await response.text()}`);
}

/**
 * Sends a WebSocket upgrade over a raw socket and returns the HTTP answer;
 * an `Upgrade`, `Sec-WebSocket-Key` or `Sec-WebSocket-Version` in `headers`
 * (any case) replaces the usual one, and two spellings of one name send it twice.
 */
export function rawUpgrade(
  port: number,
  headers: Record<string, string>,
  method: "GET" | "HEAD" = "GET",
): Promise<{ status: number; headers: Headers; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let received = "";
    socket.setEncoding("utf8");
    const finish = () => {
      const match = /^HTTP\/1\.1 (\d{3}) /.exec(received);
      const headerEnd = received.indexOf("\r\n\r\n");
      if (!match || headerEnd < 0) return false;
      const length = method === "HEAD" ? 0 : Number(/\r\ncontent-length: *(\d+)/i.exec(received)?.[1] ?? 0);
      const body = received.slice(headerEnd + 4);
      if (Buffer.byteLength(body) < length) return false;
      socket.destroy();
      const headers = new Headers();
      for (const line of received.slice(0, headerEnd).split("\r\n").slice(1)) {
        const colon = line.indexOf(":");
        if (colon > 0) headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
      }
      resolve({ status: Number(match[1]), headers, body });
      return true;
    };
    socket.on("data", (chunk: string) => {
      received += chunk;
      finish();
    });
    socket.on("error", reject);
    socket.on("close", () => finish() || reject(new Error(`closed after ${JSON.stringify(received)}`)));
    // A header given replaces the default one.
    const given = (name: string) => Object.keys(headers).some((other) => other.toLowerCase() === name);
    const upgrade = given("upgrade") ? "" : "Upgrade: websocket\r\n";
    const version = given("sec-websocket-version") ? "" : "Sec-WebSocket-Version: 13\r\n";
    const key = given("sec-websocket-key") ? "" : "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    const extra = Object.entries(headers)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join("");
    socket.write(
      `${method} /v1/ws HTTP/1.1\r\nHost: x\r\n${upgrade}Connection: Upgrade\r\n${key}${version}${extra}\r\n`,
    );
  });
}

/** Resolves once the gateway logged `message` (say, its fan-out consumer reading: a fresh broker takes seconds). */
export async function waitForLog(
  gateway: RunningGateway,
  message: string,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!gateway.logs.some((entry) => entry.msg === message)) {
    if (Date.now() > deadline) throw new Error(`${gateway.runtime} gateway did not log "${message}"`);
    await Bun.sleep(50);
  }
}
