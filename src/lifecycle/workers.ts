import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { GatewayError } from "../domain/errors.ts";
import type { Logger } from "../log/logger.ts";
import type { FanoutMessage, FanoutRelay } from "../ports/fanout-bus.ts";
import { DRAIN_SIGNALS } from "./lifecycle.ts";
import { answerStoreCalls, type HeldStores, type IpcEndpoint } from "./worker-stores.ts";

export const WORKER_ENV = "EDGE_GATEWAY_WORKER";

/** Runs `onOrphaned` when this worker's supervisor goes away without telling it, or went away already. */
export function watchSupervisor(onOrphaned: () => void): void {
  if (process.env[WORKER_ENV] === undefined) return;
  // Node emits 'disconnect' once, also while the worker still loads its code and nobody listens: a
  // supervisor killed then left a worker that started, listened and served on, orphaned, sharing the port.
  if (!process.connected) onOrphaned();
  else process.on("disconnect", onOrphaned);
}

/** What a worker tells its supervisor once it listens: from then on, a death of it is a crash to restart. */
const LISTENING_MESSAGE = { type: "listening" } as const;
/** The supervisor's question to a listening worker, which its event loop answers in kind. */
const HEARTBEAT_MESSAGE = { type: "heartbeat" } as const;

const typeOf = (message: unknown): unknown => (message as { type?: unknown } | null)?.type;

/**
 * In a worker: tells the supervisor it listens, and from then on answers its
 * heartbeats (a no-op without one, or once it is gone).
 */
export function tellSupervisorListening(): void {
  if (process.env[WORKER_ENV] === undefined) return;
  // A send on a closed channel raises an 'error' event on Node: the callback takes it (the worker drains then).
  const tell = (message: object) => {
    if (process.connected) process.send?.(message, undefined, undefined, () => {});
  };
  process.on("message", (message) => {
    if (typeOf(message) === HEARTBEAT_MESSAGE.type) tell(HEARTBEAT_MESSAGE);
  });
  tell(LISTENING_MESSAGE);
}

/** Fan-out messages of the embedded bus, from a worker to the supervisor and from it to every worker. */
const FANOUT_MESSAGE_TYPE = "fanout";

interface RelayedFanout {
  type: typeof FANOUT_MESSAGE_TYPE;
  messages: FanoutMessage[];
  /** The sending worker and its count of sends: the copy that comes back settles that send. */
  worker: string;
  ref: number;
}

const isRelayedFanout = (message: unknown): message is RelayedFanout =>
  (message as { type?: unknown } | null)?.type === FANOUT_MESSAGE_TYPE;

/** Publishes a worker waits to see back from the supervisor, at most. */
const MAX_RELAYED_IN_FLIGHT = 10_000;

const relayUnavailable = (why: string) => new GatewayError("unavailable", why, { "retry-after": "1" });

/**
 * In a worker: the embedded fan-out bus's way to the other workers, through
 * the supervisor (see superviseWorkers); undefined in a process of its own.
 */
export function workerFanoutRelay(): FanoutRelay | undefined {
  const worker = process.env[WORKER_ENV];
  if (worker === undefined || !process.send) return undefined;
  const sent = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  let nextRef = 0;
  let deliver: (messages: FanoutMessage[]) => void = () => {};
  process.on("message", (message) => {
    if (!isRelayedFanout(message)) return;
    deliver(message.messages);
    if (message.worker !== worker) return;
    sent.get(message.ref)?.resolve();
    sent.delete(message.ref);
  });
  // Sends the supervisor never passed on may reach nobody: their publishes fail (503), and the client retries.
  process.on("disconnect", () => {
    for (const { reject } of sent.values()) reject(relayUnavailable("the worker supervisor is gone"));
    sent.clear();
  });
  return {
    send: (messages) => {
      if (!process.connected) return undefined;
      // A supervisor that stopped passing messages on (alive, stuck) would hold every publish: bounded.
      if (sent.size >= MAX_RELAYED_IN_FLIGHT)
        return Promise.reject(relayUnavailable("the worker supervisor is not passing publishes on"));
      const ref = nextRef++;
      const relayed: RelayedFanout = { type: FANOUT_MESSAGE_TYPE, messages, worker, ref };
      return new Promise<void>((resolve, reject) => {
        sent.set(ref, { resolve, reject });
        // With a callback a failed send is an answer here, not an 'error' event on the process.
        process.send?.(relayed, undefined, undefined, (error: Error | null) => {
          if (!error) return;
          sent.delete(ref);
          reject(relayUnavailable(`the worker supervisor cannot be reached: ${error.message}`));
        });
      });
    },
    onMessages: (listener) => {
      deliver = listener;
    },
  };
}

/** In a worker: its IPC channel to the supervisor (for `supervisorStores`); undefined in a process of its own. */
export function supervisorEndpoint(): IpcEndpoint | undefined {
  if (process.env[WORKER_ENV] === undefined || !process.send) return undefined;
  return {
    get connected() {
      return process.connected;
    },
    // With a callback a failed send is an answer here, not an 'error' event on the process.
    send: (message, callback) => process.send?.(message, undefined, undefined, callback),
    on: (event: "message" | "disconnect", listener: (message: unknown) => void) =>
      process.on(event, listener),
  };
}

/**
 * How long past its drain deadline (or a second signal) a worker may take to
 * exit before the supervisor kills it: enough for it to log what it leaves
 * undelivered and exit by itself.
 */
export const WORKER_EXIT_GRACE_MS = 1000;

/**
 * A listening worker that answered nothing for this long is stuck (its event
 * loop blocked, or stopped): its connections hang, and with WORKERS > 1 no
 * probe sees it (each reaches one worker), so the supervisor kills it and
 * starts another. Far beyond any GC pause or event-loop lag that still serves.
 */
export const WORKER_STUCK_MS = 30_000;

/**
 * Relayed fan-out messages a worker may have waiting in the supervisor, in
 * bytes (about: their data, plus 256 each): one that reads them slower than
 * the others publish (stalled, not yet stuck) would grow the supervisor
 * without bound. Past it, the worker is killed and started again, as a stuck
 * one is: its clients reconnect, and a resume names what they missed.
 */
export const RELAY_BACKLOG_MAX_BYTES = 64 * 1024 * 1024;

/** What a relayed message takes in a worker's backlog, about. */
function relayedBytes(message: RelayedFanout): number {
  let bytes = 0;
  for (const fanout of message.messages) bytes += fanout.dataJson.length + 256;
  return bytes;
}

export interface SuperviseOptions {
  workers: number;
  /** DRAIN_TIMEOUT_MS: each worker's drain ends by then, counted from the signal the supervisor passes on. */
  drainTimeoutMs: number;
  log: Logger;
  /** Without Redis: the Idempotency-Key answers and record ids the workers share. */
  stores: HeldStores | undefined;
  /** WORKER_STUCK_MS, but for tests. */
  stuckAfterMs?: number;
  /** RELAY_BACKLOG_MAX_BYTES, but for tests. */
  relayBacklogMaxBytes?: number;
}

/**
 * Resolves when nothing listens on host:port; rejects with the listen error
 * (EADDRINUSE, EADDRNOTAVAIL) otherwise. The workers open the port for sharing
 * (SO_REUSEPORT), and the kernel lets any socket of the same user that asks
 * for sharing join them: the workers of a second gateway started on the port
 * would take part of the first one's connections instead of failing. So the
 * supervisor first listens once without sharing, which anything already
 * listening there refuses, as it refuses a gateway with WORKERS=1.
 */
export function ensureNothingListens(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}

/** True in a process started by `superviseWorkers`, and when WORKERS is 1. */
export function isWorker(workers: number): boolean {
  return workers <= 1 || process.env[WORKER_ENV] !== undefined;
}

/**
 * WORKERS > 1: this process only supervises. It starts that many copies of
 * itself, which all listen on the same port (SO_REUSEPORT: the kernel spreads
 * connections), forwards SIGTERM/SIGINT/SIGQUIT to them so each drains, restarts one
 * that dies outside a drain (never once a signal came: pending restarts are
 * cancelled), and exits once all have exited (1 if any failed in the drain).
 * A worker that exits before it listened failed to start (port in use, a
 * schema source that cannot be read): restarting it would fail the same way
 * forever, so the supervisor drains the others and exits 1, as one process would.
 * A worker still running WORKER_EXIT_GRACE_MS after its own drain deadline, or
 * after a second signal, is killed (its event loop is stuck, so its own deadline
 * never fires): the supervisor then exits 1, as a drain that overruns does.
 * Outside a drain a listening worker that answers no heartbeat for
 * WORKER_STUCK_MS is killed and, as any worker that dies then, restarted.
 * On the embedded default it also relays the workers' fan-out messages (workerFanoutRelay), and
 * without Redis it holds the Idempotency-Key answers and record ids of all workers (`stores`).
 */
export function superviseWorkers({
  workers,
  drainTimeoutMs,
  log,
  stores,
  stuckAfterMs = WORKER_STUCK_MS,
  relayBacklogMaxBytes = RELAY_BACKLOG_MAX_BYTES,
}: SuperviseOptions): void {
  // Each running worker, with its index (WORKER_ENV).
  const children = new Map<ChildProcess, number>();
  // Bytes of relayed messages each listening worker has not taken yet (sent, not yet written to its channel).
  // One still starting has no subscribers: it gets none, so is never killed for them before it listens.
  const relayBacklog = new Map<ChildProcess, number>();
  // When each listening worker last said anything: its event loop ran then.
  const lastHeard = new Map<ChildProcess, number>();
  // Pending restarts keep this process alive while no worker runs; a signal cancels them.
  const restarts = new Set<ReturnType<typeof setTimeout>>();
  let draining = false;
  let failed = false;
  // When the workers still running are killed: armed by the first signal, brought forward by a second.
  let killAt = Number.POSITIVE_INFINITY;
  let killTimer: ReturnType<typeof setTimeout> | undefined;

  const exitOnceAllExited = () => {
    if (children.size === 0) process.exit(failed ? 1 : 0);
  };

  const start = (index: number) => {
    // Own process group: a signal sent to ours (Ctrl-C, `timeout`) reaches a worker once, through us.
    // The IPC channel closes when we die, which tells an orphaned worker to drain.
    // execArgv too: the runtime's flags (Node's --max-semi-space-size) hold for every worker.
    const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
      env: { ...process.env, [WORKER_ENV]: String(index) },
      stdio: ["inherit", "inherit", "inherit", "ipc"],
      detached: true,
    });
    children.set(child, index);
    // The worker's index and pid on each line about it: its own lines carry the pid.
    const about = { worker: index, workerPid: child.pid };
    if (stores) answerStoreCalls(child, stores);
    let listening = false;
    child.on("message", (message) => {
      if (listening || typeOf(message) === LISTENING_MESSAGE.type) lastHeard.set(child, Date.now());
      if (typeOf(message) === LISTENING_MESSAGE.type) {
        listening = true;
        relayBacklog.set(child, 0);
      }
      // One sender, one order: every listening worker, the publisher's too, gets the fan-out messages as they came in.
      else if (isRelayedFanout(message)) relay(message);
    });
    child.on("exit", (code, signal) => {
      children.delete(child);
      lastHeard.delete(child);
      relayBacklog.delete(child);
      if (!draining && !listening) {
        log.fatal({ ...about, code, signal }, "worker could not start; stopping the other workers");
        failed = true;
        stopAll("SIGTERM");
        return;
      }
      if (!draining) {
        log.error({ ...about, code, signal }, "worker died; restarting it");
        const restart = setTimeout(() => {
          restarts.delete(restart);
          start(index);
        }, 1000);
        restarts.add(restart);
        return;
      }
      // A worker still loading its code has no handlers yet: the forwarded signal ends it, which is no failure.
      const failedDrain = code !== 0 && !(DRAIN_SIGNALS as readonly string[]).includes(signal ?? "");
      if (failedDrain) failed = true;
      // An error when it failed: killed (an OOM kill) it could not log why itself.
      log[failedDrain ? "error" : "info"]({ ...about, code, signal }, "worker exited");
      exitOnceAllExited();
    });
  };

  const relay = (message: RelayedFanout) => {
    const bytes = relayedBytes(message);
    for (const [worker, taken] of relayBacklog) {
      if (!worker.connected || worker.killed) continue;
      const backlog = taken + bytes;
      // A draining worker is let finish: the drain's deadline bounds it, and a kill would lose its records.
      if (backlog > relayBacklogMaxBytes && !draining) {
        log.error(
          { worker: children.get(worker), workerPid: worker.pid, backlogBytes: backlog - bytes },
          "worker is not taking the fan-out messages relayed to it; killing it",
        );
        worker.kill("SIGKILL");
        continue;
      }
      relayBacklog.set(worker, backlog);
      // A worker that went away meanwhile: its exit is handled there, the callback keeps it from an 'error' event.
      worker.send(message, () => {
        const left = relayBacklog.get(worker);
        if (left !== undefined) relayBacklog.set(worker, left - bytes);
      });
    }
  };

  const killStragglers = () => {
    for (const [child, index] of children) {
      log.error(
        { worker: index, workerPid: child.pid, drainTimeoutMs },
        "worker still running past its drain deadline or a second signal: killing it",
      );
      child.kill("SIGKILL");
    }
    failed = true;
  };

  const killRunningWorkersIn = (ms: number) => {
    if (Date.now() + ms >= killAt) return;
    killAt = Date.now() + ms;
    clearTimeout(killTimer);
    killTimer = setTimeout(killStragglers, ms);
  };

  const stopAll = (signal: (typeof DRAIN_SIGNALS)[number]) => {
    // A second signal reaches each worker as its second too: it exits at once, or is killed soon after.
    killRunningWorkersIn(draining ? WORKER_EXIT_GRACE_MS : drainTimeoutMs + WORKER_EXIT_GRACE_MS);
    draining = true;
    for (const restart of restarts) clearTimeout(restart);
    restarts.clear();
    for (const child of children.keys()) child.kill(signal);
    exitOnceAllExited();
  };

  const checkHeartbeats = () => {
    if (draining) return;
    const now = Date.now();
    for (const [child, heard] of lastHeard) {
      if (now - heard < stuckAfterMs) {
        if (child.connected) child.send(HEARTBEAT_MESSAGE, () => {});
        continue;
      }
      log.error(
        { worker: children.get(child), workerPid: child.pid, silentMs: now - heard },
        "worker answers no heartbeat: its event loop is stuck; killing it",
      );
      lastHeard.delete(child);
      child.kill("SIGKILL");
    }
  };
  // Unref'd: the workers' channels keep this process alive, and a drain ends it with them.
  setInterval(checkHeartbeats, Math.min(5000, stuckAfterMs / 4)).unref();

  for (const signal of DRAIN_SIGNALS) process.on(signal, () => stopAll(signal));
  for (let index = 0; index < workers; index++) start(index);
  log.info({ workers }, "supervising workers");
  // Each worker counts for itself and they share the port: a scrape sees one of them at random.
  log.warn(
    { workers },
    "WORKERS > 1: each /metrics scrape reaches one worker and shows only its counters; for Prometheus run one worker per instance and scale instances",
  );
  // Without Redis these live in each worker's memory, and the kernel picks each connection's worker.
  if (stores)
    log.warn(
      { workers },
      "WORKERS > 1 without REDIS_URL: each worker keeps its own presence and rate limits (Idempotency-Key answers and record ids are shared through this supervisor); set REDIS_URL to share them all",
    );
}
