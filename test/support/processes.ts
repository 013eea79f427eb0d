import { readdirSync, readFileSync } from "node:fs";
import type { SpawnOptions, Subprocess } from "bun";

/**
 * Processes tests start, each in a process group of its own, and killed with
 * everything they started: a WORKERS supervisor's workers are detached (their
 * own groups) and outlive a SIGKILLed supervisor, and `bun run start` has the
 * gateway as a child. So every process started here carries a marker in its
 * environment, which its children inherit; killing a group kills every
 * process that carries its marker, wherever it was reparented to. The runner
 * kills all of its markers when it exits or gets SIGINT/SIGTERM/SIGHUP, and
 * scripts/test-all ends by looking for any process of its run still alive.
 */

/** Set by scripts/test-all for the whole run; the leftover check looks for it. */
export const RUN_ENV = "EDGE_GATEWAY_TEST_RUN";
/** `<run>:<runner pid>:<n>` on every process started here and on its descendants. */
export const SPAWN_ENV = "EDGE_GATEWAY_TEST_SPAWN";

const run = process.env[RUN_ENV] ?? "adhoc";
const runnerPrefix = `${run}:${process.pid}:`;
let spawnedCount = 0;
const markers = new WeakMap<Subprocess, string>();

/** Pids (other than this process) whose SPAWN_ENV marker passes `matches`. */
function markedPids(matches: (marker: string) => boolean): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${pid}/environ`, "latin1");
    } catch {
      continue; // gone meanwhile, or another user's
    }
    const entry = environ.split("\0").find((entry) => entry.startsWith(`${SPAWN_ENV}=`));
    if (entry !== undefined && matches(entry.slice(SPAWN_ENV.length + 1))) pids.push(pid);
  }
  return pids;
}

function signal(target: number, name: NodeJS.Signals): void {
  try {
    process.kill(target, name);
  } catch {
    // already gone
  }
}

/** SIGKILLs every process carrying a marker that starts with `prefix`, and their groups. */
function killMarked(prefix: string): number[] {
  const pids = markedPids((marker) => marker.startsWith(prefix));
  for (const pid of pids) {
    signal(-pid, "SIGKILL"); // a detached worker leads its own group
    signal(pid, "SIGKILL");
  }
  return pids;
}

/**
 * Bun.spawn in a new process group (setsid), marked so that the group and
 * everything it starts can be killed by `killGroup`, and at the latest when
 * this runner exits.
 */
export function spawnGroup<
  const In extends SpawnOptions.Writable = "ignore",
  const Out extends SpawnOptions.Readable = "pipe",
  const Err extends SpawnOptions.Readable = "inherit",
>(command: string[], options: SpawnOptions.SpawnOptions<In, Out, Err>): Subprocess<In, Out, Err> {
  const marker = `${runnerPrefix}${++spawnedCount}`;
  const child = Bun.spawn(command, {
    ...options,
    env: { ...(options.env ?? process.env), [SPAWN_ENV]: marker },
    detached: true,
  });
  markers.set(child, marker);
  return child;
}

/**
 * SIGKILLs `child`'s process group and every process it started (detached
 * ones too), and resolves once none of them is left.
 */
export async function killGroup(child: Subprocess, timeoutMs = 10_000): Promise<void> {
  const marker = markers.get(child);
  signal(-child.pid, "SIGKILL");
  signal(child.pid, "SIGKILL");
  if (marker === undefined) {
    await child.exited;
    return;
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = markedPids((found) => found === marker);
    if (left.length === 0) break;
    for (const pid of left) {
      signal(-pid, "SIGKILL");
      signal(pid, "SIGKILL");
    }
    if (Date.now() > deadline) throw new Error(`processes ${left.join(", ")} survived SIGKILL`);
    await Bun.sleep(20);
  }
  await child.exited;
}

// On the runner's way out, whatever it started goes too. "exit" handlers must be synchronous: killMarked is.
process.on("exit", () => killMarked(runnerPrefix));
for (const name of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(name, () => {
    killMarked(runnerPrefix);
    process.exit(name === "SIGINT" ? 130 : name === "SIGTERM" ? 143 : 129);
  });
}

/**
 * Processes of the test run `runId` that are still alive: every process a
 * test started through this helper, and any other gateway (src/main.ts,
 * dist/main.js) whose environment says it belongs to the run.
 */
export function leftovers(runId: string): Array<{ pid: number; command: string }> {
  const found: Array<{ pid: number; command: string }> = [];
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    let environ: string[];
    let command: string;
    try {
      environ = readFileSync(`/proc/${pid}/environ`, "latin1").split("\0");
      command = readFileSync(`/proc/${pid}/cmdline`, "latin1").split("\0").join(" ").trim();
    } catch {
      continue;
    }
    if (command === "") continue; // a zombie: already dead, waiting for its parent
    const spawned = environ.some((entry) => entry.startsWith(`${SPAWN_ENV}=${runId}:`));
    const ofRun = environ.includes(`${RUN_ENV}=${runId}`);
    const gateway = /(src\/main\.ts|dist\/main\.js)(\s|$)/.test(command);
    if (spawned || (ofRun && gateway)) found.push({ pid, command });
  }
  return found;
}

// `bun test/support/processes.ts leftovers <run id>`: lists, kills and fails on what the run left running.
if (import.meta.main && process.argv[2] === "leftovers") {
  const runId = process.argv[3] ?? process.env[RUN_ENV];
  if (!runId) throw new Error(`usage: processes.ts leftovers <run id> (or ${RUN_ENV})`);
  const found = leftovers(runId);
  for (const { pid, command } of found) {
    console.error(`left running by the tests: pid ${pid}: ${command}`);
    signal(-pid, "SIGKILL");
    signal(pid, "SIGKILL");
  }
  if (found.length === 0) console.log("no process started by the tests is still running");
  process.exit(found.length === 0 ? 0 : 1);
}

/** Whether a process of this pid still exists (a zombie counts until reaped). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
