import { expect, test } from "bun:test";
import { isAlive, killGroup, spawnGroup } from "../support/processes.ts";
import { waitUntil } from "../support/wait.ts";

const FIXTURE = new URL("./supervised-workers.ts", import.meta.url).pathname;

/** The stand-in supervisor with one worker that drains and one stuck worker, both listening. */
async function supervise(drainTimeoutMs: number, env: Record<string, string> = {}) {
  const child = spawnGroup([process.execPath, FIXTURE], {
    env: { ...process.env, DRAIN_TIMEOUT_MS: String(drainTimeoutMs), ...env },
    stdout: "pipe",
    stderr: "inherit",
  });
  const lines: Array<Record<string, unknown>> = [];
  void (async () => {
    let pending = "";
    for await (const chunk of child.stdout) {
      pending += new TextDecoder().decode(chunk);
      const complete = pending.split("\n");
      pending = complete.pop() ?? "";
      for (const line of complete) if (line !== "") lines.push(JSON.parse(line));
    }
  })();
  await waitUntil(() => lines.filter((line) => line.msg === "listening").length === 2, "both workers");
  const stuck = lines.find((line) => line.msg === "listening" && line.worker === "1")?.pid as number;
  return { child, lines, stuck };
}

test("a worker that does not exit by its drain deadline is killed WORKER_EXIT_GRACE_MS later, and the supervisor exits 1", async () => {
  const { child, lines, stuck } = await supervise(500);
  try {
    const signalled = Date.now();
    child.kill("SIGTERM");
    // Before: the supervisor waited for the stuck worker for ever, past DRAIN_TIMEOUT_MS and any grace.
    const code = await Promise.race([child.exited, Bun.sleep(4000).then(() => "still running")]);
    expect(code).toBe(1);
    expect(Date.now() - signalled).toBeGreaterThanOrEqual(1500);
    // Its exit can be seen before this process has read its last lines from the pipe: waited for.
    const exits = () => lines.filter((line) => line.msg === "worker exited");
    await waitUntil(() => exits().length === 2, "the supervisor's lines on both workers' exits");
    expect(lines.find((line) => String(line.msg).startsWith("worker still running"))).toMatchObject({
      level: "error",
      worker: 1,
      workerPid: stuck,
    });
    await waitUntil(() => !isAlive(stuck), "the stuck worker gone");
    // Before: "worker exited" at info for both, naming neither pid; a killed worker cannot log why itself.
    expect(exits().find((line) => line.worker === 1)).toMatchObject({ level: "error", workerPid: stuck });
    expect(exits().find((line) => line.worker === 0)).toMatchObject({ level: "info", code: 0 });
  } finally {
    await killGroup(child);
  }
});

test("a second signal ends the supervisor within WORKER_EXIT_GRACE_MS, whatever is left of DRAIN_TIMEOUT_MS", async () => {
  const { child, stuck } = await supervise(60_000);
  try {
    child.kill("SIGTERM");
    await Bun.sleep(100);
    const second = Date.now();
    child.kill("SIGTERM");
    const code = await Promise.race([child.exited, Bun.sleep(4000).then(() => "still running")]);
    expect(code).toBe(1);
    expect(Date.now() - second).toBeLessThan(3000);
    await waitUntil(() => !isAlive(stuck), "the stuck worker gone");
  } finally {
    await killGroup(child);
  }
});

test("a listening worker whose event loop is blocked is killed after stuckAfterMs without a heartbeat, and started again", async () => {
  const { child, lines, stuck } = await supervise(60_000, { BLOCK_WORKER: "1", STUCK_AFTER_MS: "1000" });
  try {
    // Before: nothing noticed it; its share of the port's connections hung for ever.
    // The supervisor names it before the kill, but its line comes through a pipe this process may read
    // after it sees the pid gone: both are waited for.
    const named = () => lines.find((line) => String(line.msg).startsWith("worker answers no heartbeat"));
    await waitUntil(() => named() !== undefined, "the blocked worker named", 5000);
    await waitUntil(() => !isAlive(stuck), "the blocked worker killed", 5000);
    expect(named()).toMatchObject({
      level: "error",
      worker: 1,
      workerPid: stuck,
    });
    await waitUntil(
      () => lines.some((line) => line.msg === "listening" && line.worker === "1" && line.pid !== stuck),
      "worker 1 started again",
    );
    // The worker that answers its heartbeats is left alone.
    expect(lines.filter((line) => line.msg === "listening" && line.worker === "0")).toHaveLength(1);
  } finally {
    await killGroup(child);
  }
});

test("a worker that stops taking the fan-out messages relayed to it is killed once its backlog passes relayBacklogMaxBytes, and started again", async () => {
  // Found from outside: a stalled worker (not yet stuck) grew the supervisor by 30 MB a second under publishes.
  const { child, lines, stuck } = await supervise(60_000, {
    BLOCK_WORKER: "1",
    PUBLISH_FLOOD: "1",
    RELAY_BACKLOG_MAX_BYTES: String(4 * 1024 * 1024),
  });
  try {
    const named = () => lines.find((line) => String(line.msg).startsWith("worker is not taking the fan-out"));
    await waitUntil(() => named() !== undefined, "the stalled worker named", 15_000);
    expect(named()).toMatchObject({ level: "error", worker: 1, workerPid: stuck });
    expect(named()?.backlogBytes).toBeLessThanOrEqual(4 * 1024 * 1024);
    await waitUntil(() => !isAlive(stuck), "the stalled worker killed", 15_000);
    await waitUntil(
      () => lines.some((line) => line.msg === "listening" && line.worker === "1" && line.pid !== stuck),
      "worker 1 started again",
      15_000,
    );
    // Restarted under the same load (and stalled again), it is never taken for one that cannot start.
    await Bun.sleep(1000);
    expect(lines.filter((line) => line.level === "fatal")).toEqual([]);
    // The worker that keeps up is left alone.
    expect(lines.filter((line) => line.msg === "listening" && line.worker === "0")).toHaveLength(1);
  } finally {
    await killGroup(child);
  }
});
