import { describe, expect, test } from "bun:test";
import pino from "pino";
import type { DrainStep } from "../../src/lifecycle/drain-plan.ts";
import { Lifecycle } from "../../src/lifecycle/lifecycle.ts";

/** Runs a drain with `steps` and resolves with the exit code and each step's deadline. */
function drain(steps: DrainStep[], drainTimeoutMs: number) {
  let signalledAt = 0;
  const lifecycle = new Lifecycle({
    drainTimeoutMs,
    log: pino({ level: "silent" }),
    exit: (code) => exited(code),
  });
  lifecycle.serving(steps, () => ({ records: 0, bytes: 0 }));
  let exited: (code: number) => void = () => {};
  const exitCode = new Promise<number>((resolve) => {
    exited = resolve;
  });
  return {
    lifecycle,
    signal: () => {
      signalledAt = Date.now();
      lifecycle.onSignal("SIGTERM");
      return exitCode;
    },
    signalledAt: () => signalledAt,
  };
}

describe("Lifecycle", () => {
  test("a signal before the gateway serves exits 0 at once, running no step; a second one is a second signal", () => {
    const exits: number[] = [];
    const lifecycle = new Lifecycle({
      drainTimeoutMs: 1000,
      log: pino({ level: "silent" }),
      exit: (code) => exits.push(code),
    });
    lifecycle.onSignal("SIGTERM");
    expect(exits).toEqual([0]);
    lifecycle.onSignal("SIGTERM");
    expect(exits).toEqual([0, 1]);
  });

  test("the drain deadline starts at the signal, not when the lifecycle was built", async () => {
    const deadlines: number[] = [];
    const run = drain([{ name: "record", run: (deadline) => void deadlines.push(deadline) }], 500);
    // Older than DRAIN_TIMEOUT_MS when the signal comes.
    await Bun.sleep(700);
    expect(await run.signal()).toBe(0);
    const budget = (deadlines[0] as number) - run.signalledAt();
    expect(budget).toBeGreaterThanOrEqual(400);
    expect(budget).toBeLessThanOrEqual(500);
  });

  test("every step gets the same deadline, so a later step gets what the earlier ones left", async () => {
    const deadlines: number[] = [];
    const left: number[] = [];
    const run = drain(
      [
        {
          name: "slow",
          run: (deadline) => {
            deadlines.push(deadline);
            return Bun.sleep(300);
          },
        },
        {
          name: "record",
          run: (deadline) => {
            deadlines.push(deadline);
            left.push(deadline - Date.now());
          },
        },
      ],
      2000,
    );
    expect(await run.signal()).toBe(0);
    // One deadline, set at the signal (less the exit reserve): the later step's time is what the slow one left.
    // (The time left was held above 1300 ms, which a loaded machine stretching the 300 ms step could break.)
    expect(deadlines[1]).toBe(deadlines[0] as number);
    expect((deadlines[0] as number) - run.signalledAt()).toBeGreaterThan(1700);
    expect(left[0]).toBeLessThan(1600);
  });

  test("a failed step is logged, the next steps still run, and the exit code is 1", async () => {
    const ran: string[] = [];
    const run = drain(
      [
        {
          name: "flush",
          run: async () => {
            ran.push("flush");
            throw new Error("3 records undelivered at the drain deadline");
          },
        },
        { name: "release", run: () => void ran.push("release") },
      ],
      1000,
    );
    expect(await run.signal()).toBe(1);
    expect(ran).toEqual(["flush", "release"]);
  });

  test("a drain that overruns DRAIN_TIMEOUT_MS exits 1 at the hard deadline", async () => {
    const run = drain([{ name: "hang", run: () => new Promise<void>(() => {}) }], 300);
    // The step never ends: exiting at all is the deadline at work. The bound only rules out "much later", generously.
    const started = Date.now();
    expect(await run.signal()).toBe(1);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  test("a second signal exits 1 at once", async () => {
    const codes: number[] = [];
    const lifecycle = new Lifecycle({
      drainTimeoutMs: 5000,
      log: pino({ level: "silent" }),
      exit: (code) => void codes.push(code),
    });
    lifecycle.serving([{ name: "hang", run: () => new Promise<void>(() => {}) }], () => ({
      records: 0,
      bytes: 0,
    }));
    lifecycle.onSignal("SIGTERM");
    lifecycle.onSignal("SIGTERM");
    expect(codes).toEqual([1]);
  });

  /** A drain whose step never ends, with `undelivered` queued, and the lines it logs. */
  function hangingDrain(drainTimeoutMs: number, undelivered: { records: number; bytes: number }) {
    const lines: Array<Record<string, unknown>> = [];
    const codes: number[] = [];
    let exited: () => void = () => {};
    const exit = new Promise<void>((resolve) => {
      exited = resolve;
    });
    const lifecycle = new Lifecycle({
      drainTimeoutMs,
      log: pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) }),
      exit: (code) => {
        codes.push(code);
        exited();
      },
    });
    lifecycle.serving([{ name: "hang", run: () => new Promise<void>(() => {}) }], () => undelivered);
    return { lifecycle, lines, codes, exit };
  }

  test("a second signal logs, as an error, how many accepted records (and bytes) it leaves undelivered", () => {
    const { lifecycle, lines, codes } = hangingDrain(5000, { records: 42, bytes: 4200 });
    lifecycle.onSignal("SIGTERM");
    lifecycle.onSignal("SIGINT");
    expect(codes).toEqual([1]);
    expect(lines.at(-1)).toMatchObject({
      level: 50,
      signal: "SIGINT",
      lost: 42,
      lostBytes: 4200,
      msg: "second signal: exiting with records undelivered",
    });
  });

  test("a second signal with nothing queued is a warning that loses nothing", () => {
    const { lifecycle, lines } = hangingDrain(5000, { records: 0, bytes: 0 });
    lifecycle.onSignal("SIGTERM");
    lifecycle.onSignal("SIGTERM");
    expect(lines.at(-1)).toMatchObject({ level: 40, lost: 0, msg: "second signal: exiting now" });
  });

  test("a drain overrunning DRAIN_TIMEOUT_MS logs how many accepted records it leaves undelivered", async () => {
    const { lifecycle, lines, codes, exit } = hangingDrain(200, { records: 7, bytes: 700 });
    lifecycle.onSignal("SIGTERM");
    await exit;
    expect(codes).toEqual([1]);
    expect(lines.at(-1)).toMatchObject({
      level: 50,
      lost: 7,
      lostBytes: 700,
      msg: "drain timed out: exiting",
    });
  });
  test("a supervisor gone during the drain lets it finish (no second signal); gone before any signal, it starts the drain", async () => {
    let flushed = false;
    const run = drain(
      [
        {
          name: "flush",
          run: async () => {
            await Bun.sleep(200);
            flushed = true;
          },
        },
      ],
      5000,
    );
    const exitCode = run.signal();
    // Before: taken as a second signal, the supervisor's end exited 1 at once, every queued record lost.
    run.lifecycle.drainUnlessDraining("supervisor gone");
    expect(await exitCode).toBe(0);
    expect(flushed).toBe(true);

    const exits: number[] = [];
    const orphan = new Lifecycle({
      drainTimeoutMs: 1000,
      log: pino({ level: "silent" }),
      exit: (code) => exits.push(code),
    });
    orphan.serving([{ name: "flush", run: () => {} }], () => ({ records: 0, bytes: 0 }));
    orphan.drainUnlessDraining("supervisor gone");
    await Bun.sleep(50);
    expect(exits).toEqual([0]);
  });
});
