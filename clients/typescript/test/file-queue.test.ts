import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { STALE_MS } from "../src/file-lock.js";
import { fileQueue } from "../src/file-queue.js";
import { EventClient } from "../src/index.js";

const MODULE = new URL("../src/file-queue.ts", import.meta.url).pathname;

let folder: string;
let path: string;
beforeEach(() => {
  folder = mkdtempSync(join(tmpdir(), "file-queue-"));
  path = join(folder, "events.jsonl");
});
afterEach(() => rmSync(folder, { recursive: true, force: true }));

/** The pid of a process that has exited (and was reaped): no process has it now. */
async function deadPid(): Promise<number> {
  const child = Bun.spawn(["true"]);
  await child.exited;
  return child.pid;
}

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
      // An older client's lock (a bare pid), written long before the process that has the pid now started.
      writeLock(String(sleeper.pid), 3_600_000);
      const queue = fileQueue(path);
      await queue.close();
      // A lock of this client naming that pid, with another start time than its process has.
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
    const dead = await deadPid();
    for (let round = 0; round < rounds; round++) writeFileSync(`${path}.${round}.lock`, String(dead));
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
