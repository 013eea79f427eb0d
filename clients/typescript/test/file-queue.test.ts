import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { STALE_MS, UNPROVEN_STALE_MS } from "../src/file-lock.js";
import { fileQueue } from "../src/file-queue.js";
import { type DeliveryFailure, EventClient } from "../src/index.js";

const MODULE = new URL("../src/file-queue.ts", import.meta.url).pathname;
const CLIENT = new URL("../src/index.ts", import.meta.url).pathname;

/** Reads a child's stdout line by line. */
function linesOf(child: { stdout: ReadableStream<Uint8Array> }) {
  const reader = child.stdout.getReader();
  const lines: string[] = [];
  let rest = "";
  const reading = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      rest += new TextDecoder().decode(value);
      const parts = rest.split("\n");
      rest = parts.pop() as string;
      lines.push(...parts);
    }
  })();
  return {
    lines,
    /** Resolves with the first line that passes `test`, within `timeoutMs`. */
    async next(test: (line: string) => boolean, timeoutMs = 5_000): Promise<string> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = lines.find(test);
        if (found !== undefined) return found;
        if (Date.now() > deadline) throw new Error(`no such line; got ${JSON.stringify(lines)}`);
        await Promise.race([reading, Bun.sleep(20)]);
      }
    },
  };
}

/** Runs `script` (TypeScript) in a child Bun process and gives its output; `node:fs` may be mocked there. */
async function runChild(script: string): Promise<string> {
  const child = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  await child.exited;
  if (child.exitCode !== 0) throw new Error(`child failed: ${err}`);
  return out.trim();
}

let folder: string;
let path: string;
beforeEach(() => {
  folder = mkdtempSync(join(tmpdir(), "file-queue-"));
  path = join(folder, "events.jsonl");
});
afterEach(() => rmSync(folder, { recursive: true, force: true }));

/** A lock as another holder would have written it, last touched `ageMs` ago. */
function writeLock(content: string, ageMs = 0): void {
  writeFileSync(`${path}.lock`, content);
  const at = new Date(Date.now() - ageMs);
  utimesSync(`${path}.lock`, at, at);
}

const record = (id: string) => ({ id, line: JSON.stringify({ id, type: "click", data: {} }) });

describe("fileQueue's lock", () => {
  test("a second queue on the file in this process is refused until the first is closed (it would erase the first's records); closing the client lets it go", async () => {
    const first = fileQueue(path);
    await first.load();
    first.add([record("a")]);
    await first.flush();
    expect(() => fileQueue(path)).toThrow("in use by this process");
    await first.close();
    const second = fileQueue(path);
    expect((await second.load()).map(({ id }) => id)).toEqual(["a"]);
    // EventClient.close() closes its storage: the next client of this process opens the file.
    const events = new EventClient({
      url: "http://gateway.test",
      token: "t",
      storage: second,
      fetch: () => Promise.reject(new Error("down")),
    });
    expect(() => fileQueue(path)).toThrow("in use by this process");
    await events.close({ timeoutMs: 10 });
    const third = fileQueue(path);
    expect((await third.load()).map(({ id }) => id)).toEqual(["a"]);
    await third.close();
    expect(existsSync(`${path}.lock`)).toBe(false);
  });

  test("a lock of another container (another pid namespace or host) with this process's pid is refused while it is touched, taken over once it is not for STALE_MS", async () => {
    // Containers sharing a volume all run their client as pid 1: the pid alone said "this process".
    const other = {
      pid: process.pid,
      host: "other-container",
      scope: "other-boot pid:[1]",
      start: "1",
      token: "t1",
    };
    writeLock(JSON.stringify(other));
    expect(() => fileQueue(path)).toThrow(`in use by process ${process.pid} on other-container`);
    writeLock(JSON.stringify(other), STALE_MS + 1000);
    const queue = fileQueue(path);
    expect(JSON.parse(readFileSync(`${path}.lock`, "utf8"))).toMatchObject({
      pid: process.pid,
      host: expect.any(String),
    });
    await queue.close();
  });

  test("a stale lock whose pid another process has since is taken over (it blocked every start for good)", async () => {
    const sleeper = Bun.spawn(["sleep", "30"]);
    try {
      // A lock naming that pid, with another start time than its process has.
      const probe = fileQueue(join(folder, "probe"));
      const me = JSON.parse(readFileSync(join(folder, "probe.lock"), "utf8"));
      await probe.close();
      writeLock(JSON.stringify({ ...me, pid: sleeper.pid, start: "1", token: "t2" }));
      await fileQueue(path).close();
    } finally {
      sleeper.kill();
    }
  });

  test("the holder touches its lock while open", async () => {
    const queue = fileQueue(path);
    const old = new Date(Date.now() - 60_000);
    utimesSync(`${path}.lock`, old, old);
    await Bun.sleep(2_500);
    expect(Date.now() - statSync(`${path}.lock`).mtimeMs).toBeLessThan(3_000);
    await queue.close();
  });

  test("processes taking over one stale lock at once: exactly one gets it", async () => {
    const rounds = 12;
    const contenders = 4;
    // Locks of another container, untouched for longer than STALE_MS.
    for (let round = 0; round < rounds; round++) {
      const lock = `${path}.${round}.lock`;
      writeFileSync(
        lock,
        JSON.stringify({ pid: 1, host: "gone", scope: "other-boot pid:[1]", token: `gone-${round}` }),
      );
      const at = new Date(Date.now() - STALE_MS - 5_000);
      utimesSync(lock, at, at);
    }
    const start = Date.now() + 1_500;
    const script = `const { fileQueue } = await import(${JSON.stringify(MODULE)});
const won = [];
for (let round = 0; round < ${rounds}; round++) {
  while (Date.now() < ${start} + round * 100);
  try { fileQueue(${JSON.stringify(path)} + "." + round); won.push(round); } catch (error) { if (!String(error).includes("in use") && !String(error).includes("taken over")) throw error; }
}
console.log(JSON.stringify(won));
// Held until every contender has tried (exiting lets them go).
setInterval(() => {}, 1000);`;
    const children = Array.from({ length: contenders }, () =>
      Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "inherit" }),
    );
    const won = await Promise.all(
      children.map(async (child) => {
        const reader = child.stdout.getReader();
        let text = "";
        while (!text.includes("\n")) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`a contender exited: ${text}`);
          text += new TextDecoder().decode(value);
        }
        return JSON.parse(text) as number[];
      }),
    ).finally(() => {
      for (const child of children) child.kill("SIGKILL");
    });
    const winners = Array.from(
      { length: rounds },
      (_, round) => won.filter((rounds) => rounds.includes(round)).length,
    );
    expect(winners).toEqual(Array(rounds).fill(1));
    // No break file is left behind.
    expect(readdirSync(folder).filter((name) => name.includes(".break-") || name.includes(".new-"))).toEqual(
      [],
    );
  }, 20_000);
});

describe("fileQueue's lock, lost or failing", () => {
  test("a holder paused until another container took its lock stops writing the file and says so once; its records stay in memory", async () => {
    // The holder runs in another pid namespace (another container): its lock goes stale by time alone.
    const script = `const { fileQueue } = await import(${JSON.stringify(MODULE)});
const { EventClient } = await import(${JSON.stringify(CLIENT)});
let enqueued = 0;
const storage = fileQueue(${JSON.stringify(path)});
const events = new EventClient({
  url: "http://gateway.test",
  token: "t",
  storage,
  fetch: () => Promise.reject(new Error("down")),
  // Nothing is sent during the test: every record stays in the buffer.
  flushIntervalMs: 600000,
  onError: (failure) => console.log(JSON.stringify({ failure, buffered: events.stats.buffered, enqueued })),
});
const enqueue = () => { events.enqueue({ type: "click", data: {} }); enqueued++; };
enqueue();
await storage.flush();
console.log("ready");
setInterval(enqueue, 200);`;
    const unshare = Bun.spawn(["unshare", "-p", "-f", "--mount-proc", process.execPath, "-e", script], {
      stdout: "pipe",
      stderr: "inherit",
    });
    const output = linesOf(unshare);
    let holder = 0;
    try {
      await output.next((line) => line === "ready", 10_000);
      holder = Number(readFileSync(`/proc/${unshare.pid}/task/${unshare.pid}/children`, "utf8").trim());
      process.kill(holder, "SIGSTOP");
      await Bun.sleep(STALE_MS + 1_000);
      const queue = fileQueue(path);
      expect((await queue.load()).length).toBeGreaterThan(0);
      queue.add([record("b1")]);
      await queue.flush();
      const journal = readFileSync(path, "utf8");
      process.kill(holder, "SIGCONT");
      const said = JSON.parse(await output.next((line) => line.startsWith("{")));
      expect(said.failure).toMatchObject({ kind: "storage", records: [] });
      expect(said.failure.message).toContain("taken over");
      expect(said.buffered).toBe(said.enqueued);
      // It goes on enqueueing: none of it reaches the file, and it is said once.
      await Bun.sleep(1_000);
      expect(readFileSync(path, "utf8")).toBe(journal);
      expect(output.lines.filter((line) => line.startsWith("{")).length).toBe(1);
      await queue.close();
    } finally {
      if (holder > 0) {
        process.kill(holder, "SIGCONT");
        process.kill(holder, "SIGKILL");
      }
      unshare.kill("SIGKILL");
      await unshare.exited;
    }
  }, 30_000);

  test("without /proc (macOS, Windows) a live pid of this host holds its lock however long it was untouched, up to a minute", async () => {
    const sleeper = Bun.spawn(["sleep", "30"]);
    // This process with node:fs answering ENOENT for /proc, as a host without it does.
    const attempt = `import { mock } from "bun:test";
import * as fs from "node:fs";
const real = { ...fs };
const noProc = (name) => (file, ...rest) => {
  if (String(file).startsWith("/proc")) throw Object.assign(new Error("ENOENT"), { code: "ENOENT" });
  return real[name](file, ...rest);
};
mock.module("node:fs", () => ({ ...real, readFileSync: noProc("readFileSync"), readlinkSync: noProc("readlinkSync") }));
const { fileQueue } = await import(${JSON.stringify(MODULE)});
try { await fileQueue(${JSON.stringify(path)}).close(); console.log("taken"); } catch (error) { console.log(String(error)); }`;
    try {
      const lock = JSON.stringify({
        pid: sleeper.pid,
        host: hostname(),
        scope: `host ${hostname()}`,
        token: "t",
      });
      writeLock(lock, STALE_MS + 5_000);
      expect(await runChild(attempt)).toContain(`in use by process ${sleeper.pid}`);
      writeLock(lock, UNPROVEN_STALE_MS + 5_000);
      expect(await runChild(attempt)).toBe("taken");
      sleeper.kill();
      await sleeper.exited;
      writeLock(lock);
      expect(await runChild(attempt)).toBe("taken");
    } finally {
      sleeper.kill();
    }
  }, 20_000);

  test("a claim whose link was made though the file system answered EEXIST (NFS) is this process's: it holds the lock", async () => {
    const attempt = `import { mock } from "bun:test";
import * as fs from "node:fs";
const real = { ...fs };
mock.module("node:fs", () => ({
  ...real,
  linkSync: (from, to) => {
    real.linkSync(from, to);
    throw Object.assign(new Error("EEXIST"), { code: "EEXIST" });
  },
}));
const { fileQueue } = await import(${JSON.stringify(MODULE)});
try { await fileQueue(${JSON.stringify(path)}).close(); console.log("taken"); } catch (error) { console.log(String(error)); }`;
    expect(await runChild(attempt)).toBe("taken");
    expect(existsSync(`${path}.lock`)).toBe(false);
  });

  test("a queue whose lock was taken over before its first load leaves the new holder's file alone (load compacted it) and says so once", async () => {
    const queue = fileQueue(path);
    // The new holder's journal, not yet compacted: a compaction would rewrite it.
    const journal = `${JSON.stringify(["+", "a", record("a").line])}\n${JSON.stringify(["-", "a"])}\n${JSON.stringify(["+", "b", record("b").line])}\n`;
    writeFileSync(path, journal);
    writeLock(JSON.stringify({ pid: 1, host: "elsewhere", token: "theirs" }));
    const reports: unknown[] = [];
    expect(await queue.load((error) => reports.push(error))).toEqual([]);
    queue.add([record("c")]);
    await queue.flush();
    expect(readFileSync(path, "utf8")).toBe(journal);
    expect(reports).toEqual([expect.objectContaining({ message: expect.stringContaining("taken over") })]);
    await queue.close();
  });

  test("a holder paused between its lock check and an append, its lock taken over meanwhile, never writes into the new holder's file", async () => {
    const theirs = `${JSON.stringify(["+", "x", record("x").line])}\n`;
    // As this queue reads its lock before a write, another container takes it over and loads the file
    // (compacting it) before the append runs: the pause falls between the check and the append.
    const script = `import { mock } from "bun:test";
import * as fs from "node:fs";
const real = { ...fs };
let armed = false;
mock.module("node:fs", () => ({
  ...real,
  openSync: (file, ...rest) => {
    const fd = real.openSync(file, ...rest);
    if (armed && file === ${JSON.stringify(`${path}.lock`)}) {
      armed = false;
      real.unlinkSync(file);
      real.writeFileSync(file, JSON.stringify({ pid: 1, host: "elsewhere", token: "theirs" }));
      real.writeFileSync(${JSON.stringify(`${path}.theirs`)}, ${JSON.stringify(theirs)});
      real.renameSync(${JSON.stringify(`${path}.theirs`)}, ${JSON.stringify(path)});
    }
    return fd;
  },
}));
const { fileQueue } = await import(${JSON.stringify(MODULE)});
const queue = fileQueue(${JSON.stringify(path)});
const reports = [];
await queue.load((error) => reports.push(String(error)));
queue.add([{ id: "a", line: "{}" }]);
await queue.flush();
armed = true;
queue.add([{ id: "b", line: "{}" }]);
await queue.flush();
const paused = real.readFileSync(${JSON.stringify(path)}, "utf8");
queue.add([{ id: "c", line: "{}" }]);
await queue.flush();
console.log(JSON.stringify({ paused, reports, after: real.readFileSync(${JSON.stringify(path)}, "utf8") }));`;
    expect(JSON.parse(await runChild(script))).toEqual({
      paused: theirs,
      reports: [expect.stringContaining("taken over")],
      after: theirs,
    });
  });

  test("a file removed or replaced under its open queue (a holder that lost the lock compacting late) is written whole again at the next write", async () => {
    const queue = fileQueue(path);
    await queue.load();
    const storedIds = () =>
      readFileSync(path, "utf8")
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line)[1]);
    queue.add([record("a")]);
    await queue.flush();
    rmSync(path);
    queue.add([record("b")]);
    await queue.flush();
    expect(storedIds()).toEqual(["a", "b"]);
    writeFileSync(`${path}.late`, `${JSON.stringify(["+", "x", record("x").line])}\n`);
    renameSync(`${path}.late`, path);
    queue.add([record("c")]);
    await queue.flush();
    expect(storedIds()).toEqual(["a", "b", "c"]);
    await queue.close();
  });

  test("a file removed under its open queue with no write after is written whole again as the queue closes", async () => {
    const queue = fileQueue(path);
    await queue.load();
    queue.add([record("a"), record("b")]);
    await queue.flush();
    rmSync(path);
    await queue.close();
    const ids = readFileSync(path, "utf8")
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line)[1]);
    expect(ids).toEqual(["a", "b"]);
    expect(existsSync(`${path}.lock`)).toBe(false);
  });

  test("a compaction closes its handle to the file before replacing it (Windows does not replace a file open in this process)", async () => {
    // rename() as Windows does it: a file this process holds open is not replaced (EPERM).
    const script = `import { mock } from "bun:test";
import * as fs from "node:fs";
import * as promises from "node:fs/promises";
const real = { ...promises };
mock.module("node:fs/promises", () => ({
  ...real,
  rename: async (from, to) => {
    for (const fd of fs.readdirSync("/proc/self/fd")) {
      let target = "";
      try {
        target = fs.readlinkSync("/proc/self/fd/" + fd);
      } catch {}
      if (target === to) throw Object.assign(new Error("EPERM: operation not permitted, rename"), { code: "EPERM" });
    }
    return real.rename(from, to);
  },
}));
const { fileQueue } = await import(${JSON.stringify(MODULE)});
const queue = fileQueue(${JSON.stringify(path)});
await queue.load();
queue.add([{ id: "keep", line: "{}" }]);
await queue.flush();
// Past the journal's bounds (over 1,000 lines, 4 per record): the write compacts the file.
const sent = Array.from({ length: 600 }, (_, index) => ({ id: "sent" + index, line: "{}" }));
queue.add(sent);
queue.remove(sent.map(({ id }) => id));
await queue.flush();
queue.add([{ id: "after", line: "{}" }]);
await queue.flush();
await queue.close();
const ids = fs.readFileSync(${JSON.stringify(path)}, "utf8").split("\\n").filter(Boolean).map((line) => JSON.parse(line)[1]);
console.log(JSON.stringify(ids));`;
    expect(JSON.parse(await runChild(script))).toEqual(["keep", "after"]);
  });

  test("a lock another process claims first while this queue takes it again (gone with its file) is lost: said once, nothing written", async () => {
    // The lock and file vanish (the folder emptied); as this queue claims the lock again, another process's link wins.
    const script = `import { mock } from "bun:test";
import * as fs from "node:fs";
const real = { ...fs };
let armed = false;
mock.module("node:fs", () => ({
  ...real,
  linkSync: (from, to) => {
    if (armed && to === ${JSON.stringify(`${path}.lock`)}) {
      real.writeFileSync(to, JSON.stringify({ pid: 1, host: "elsewhere", token: "theirs" }));
      throw Object.assign(new Error("EEXIST"), { code: "EEXIST" });
    }
    return real.linkSync(from, to);
  },
}));
const { fileQueue } = await import(${JSON.stringify(MODULE)});
const queue = fileQueue(${JSON.stringify(path)});
const reports = [];
await queue.load((error) => reports.push(String(error)));
real.unlinkSync(${JSON.stringify(path)});
real.unlinkSync(${JSON.stringify(`${path}.lock`)});
armed = true;
queue.add([{ id: "a", line: "{}" }]);
await queue.flush();
console.log(JSON.stringify({ reports, written: real.existsSync(${JSON.stringify(path)}) }));`;
    // Not a write error to retry (one the write batcher would keep quiet about): the lock is lost, and said so.
    expect(JSON.parse(await runChild(script))).toEqual({
      reports: [expect.stringContaining("taken over")],
      written: false,
    });
  });

  test("a lock that fails otherwise than held (a folder in its way) makes load() reject: the client says so once and runs from memory", async () => {
    mkdirSync(`${path}.lock`);
    expect(fileQueue(path).load()).rejects.toThrow("EISDIR");
    const failures: DeliveryFailure[] = [];
    const sent: string[] = [];
    const events = new EventClient({
      url: "http://gateway.test",
      token: "t",
      storage: fileQueue(path),
      fetch: async (_url, init) => {
        sent.push(String(init.body));
        return Response.json({ accepted: 1, errors: [] }, { status: 202 });
      },
      onError: (failure) => failures.push(failure),
    });
    events.enqueue({ type: "click", data: {} });
    await events.flush();
    expect(sent.length).toBe(1);
    expect(failures).toEqual([
      { kind: "storage", status: undefined, message: expect.stringContaining("EISDIR"), records: [] },
    ]);
    await events.close();
    expect(existsSync(path)).toBe(false);
  });

  test("a queue its client closed, given to another client, is said to be closed once (it wrote nothing without a word)", async () => {
    const queue = fileQueue(path);
    const fetch = async () => Response.json({ accepted: 1, errors: [] }, { status: 202 });
    const first = new EventClient({ url: "http://gateway.test", token: "t", storage: queue, fetch });
    await first.close();
    const failures: DeliveryFailure[] = [];
    const second = new EventClient({
      url: "http://gateway.test",
      token: "t",
      storage: queue,
      fetch,
      onError: (failure) => failures.push(failure),
    });
    second.enqueue({ type: "click", data: {} });
    second.enqueue({ type: "click", data: {} });
    await second.flush();
    expect(failures).toEqual([
      { kind: "storage", status: undefined, message: expect.stringContaining("closed"), records: [] },
    ]);
    expect(second.stats.accepted).toBe(2);
    await second.close();
    // A new queue opens the file.
    await fileQueue(path).close();
  });

  test("break and new files left by processes killed mid-claim are swept once older than STALE_MS", async () => {
    const old = new Date(Date.now() - STALE_MS - 5_000);
    for (const name of ["break-gone", "new-gone", "new-fresh"]) {
      writeFileSync(`${path}.lock.${name}`, "{}");
      if (name.endsWith("gone")) utimesSync(`${path}.lock.${name}`, old, old);
    }
    await fileQueue(path).close();
    expect(readdirSync(folder).filter((name) => name.includes(".lock."))).toEqual([
      "events.jsonl.lock.new-fresh",
    ]);
  });
});
