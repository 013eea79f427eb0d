import { describe, expect, test } from "bun:test";
import { MemoryRecordIdStore } from "../../src/infra/idempotency/memory-record-ids.ts";
import { MemoryIdempotencyStore } from "../../src/infra/idempotency/memory-store.ts";
import {
  answerStoreCalls,
  type HeldStores,
  type IpcEndpoint,
  supervisorStores,
} from "../../src/lifecycle/worker-stores.ts";

type Listener = (message?: unknown) => void;

/** An IPC channel in one process: each side's messages reach the other's listeners a turn later, as JSON. */
function channel(): {
  worker: IpcEndpoint;
  supervisor: IpcEndpoint;
  disconnect: () => void;
  /** The worker's end closed (it died): the supervisor's side hears it. */
  workerGone: () => void;
  mute: () => void;
} {
  const listeners = { worker: new Map<string, Listener[]>(), supervisor: new Map<string, Listener[]>() };
  let connected = true;
  let muted = false;
  const side = (own: Map<string, Listener[]>, other: Map<string, Listener[]>): IpcEndpoint => ({
    get connected() {
      return connected;
    },
    send: (message, callback) => {
      const copy = JSON.parse(JSON.stringify(message)) as unknown;
      setImmediate(() => {
        callback(null);
        if (!muted) for (const listener of other.get("message") ?? []) listener(copy);
      });
    },
    on: (event: string, listener: Listener) => {
      own.set(event, [...(own.get(event) ?? []), listener]);
    },
  });
  return {
    worker: side(listeners.worker, listeners.supervisor),
    supervisor: side(listeners.supervisor, listeners.worker),
    disconnect: () => {
      connected = false;
      for (const listener of listeners.worker.get("disconnect") ?? []) listener();
    },
    workerGone: () => {
      connected = false;
      for (const listener of listeners.supervisor.get("disconnect") ?? []) listener();
    },
    mute: () => {
      muted = true;
    },
  };
}

function supervisorHolding(pendingMs = 60_000): HeldStores {
  return {
    idempotency: new MemoryIdempotencyStore({ windowMs: 60_000, pendingMs, maxKeys: 100, maxBytes: 1e6 }),
    recordIds: new MemoryRecordIdStore({ pendingMs, maxIds: 100 }),
    pendingMs,
  };
}

/**
 * Fail-open counters, and options with a worker's deadline for the supervisor's answer. The answer
 * comes a turn later (setImmediate), which a loaded machine can hold past a short deadline: a turn
 * runs due timers first, so at 100 ms one pause failed an answered call open. Only the test of a
 * supervisor that does not answer waits for a short one.
 */
const failOpens = (timeoutMs = 1000) => {
  const counts = { idempotency: 0, recordIds: 0 };
  return {
    counts,
    options: {
      timeoutMs,
      onIdempotencyFailOpen: () => counts.idempotency++,
      onRecordIdsFailOpen: () => counts.recordIds++,
    },
  };
};

describe("the supervisor's stores, reached by its workers", () => {
  test("two workers see one store: a key or id one claimed is pending, then done, for the other", async () => {
    const held = supervisorHolding();
    const [a, b] = [channel(), channel()];
    answerStoreCalls(a.supervisor, held);
    answerStoreCalls(b.supervisor, held);
    const { counts, options } = failOpens();
    const first = supervisorStores(a.worker, options);
    const second = supervisorStores(b.worker, options);

    expect(await first.idempotency.claim("acme\nkey", "f1")).toEqual({ state: "claimed" });
    expect(await second.idempotency.claim("acme\nkey", "f1")).toEqual({
      state: "pending",
      fingerprint: "f1",
    });
    const reply = { status: 202, headers: { "content-type": "application/json" }, body: '{"accepted":1}' };
    await first.idempotency.complete("acme\nkey", "f1", reply);
    expect(await second.idempotency.claim("acme\nkey", "f1")).toEqual({
      state: "done",
      fingerprint: "f1",
      reply,
    });
    await second.idempotency.release("acme\nkey");
    expect(await first.idempotency.claim("acme\nkey", "f2")).toEqual({ state: "claimed" });

    expect(await first.recordIds.claim("acme", ["r1", "r2"], "request-a", 60_000)).toEqual(["new", "new"]);
    expect(await second.recordIds.claim("acme", ["r2", "r3"], "request-b", 60_000)).toEqual([
      "pending",
      "new",
    ]);
    await first.recordIds.confirm("acme", "request-a", 60_000);
    await second.recordIds.release("acme", "request-b");
    expect(await second.recordIds.claim("acme", ["r1", "r3"], "request-c", 60_000)).toEqual(["seen", "new"]);
    expect(counts).toEqual({ idempotency: 0, recordIds: 0 });
  });

  test("a worker that dies mid-request frees its claims at once: the retry on another worker runs, not 409 for the pending time", async () => {
    const held = supervisorHolding();
    const [dying, living] = [channel(), channel()];
    answerStoreCalls(dying.supervisor, held);
    answerStoreCalls(living.supervisor, held);
    const { options } = failOpens();
    const killed = supervisorStores(dying.worker, options);
    const other = supervisorStores(living.worker, options);
    expect(await killed.idempotency.claim("acme\nkey", "f")).toEqual({ state: "claimed" });
    expect(await killed.recordIds.claim("acme", ["r1"], "request-a", 60_000)).toEqual(["new"]);
    // Answered before it died: its answer stays.
    const reply = { status: 202, headers: {}, body: "{}" };
    expect(await killed.idempotency.claim("acme\nanswered", "f")).toEqual({ state: "claimed" });
    await killed.idempotency.complete("acme\nanswered", "f", reply);
    // Another worker's claim is not the dead one's to free.
    expect(await other.idempotency.claim("acme\nother", "f")).toEqual({ state: "claimed" });
    expect(await other.idempotency.claim("acme\nkey", "f")).toEqual({ state: "pending", fingerprint: "f" });

    dying.workerGone();
    expect(await other.idempotency.claim("acme\nkey", "f")).toEqual({ state: "claimed" });
    expect(await other.recordIds.claim("acme", ["r1"], "request-b", 60_000)).toEqual(["new"]);
    expect(await other.idempotency.claim("acme\nanswered", "f")).toEqual({
      state: "done",
      fingerprint: "f",
      reply,
    });
    expect(await other.idempotency.claim("acme\nother", "f")).toEqual({ state: "pending", fingerprint: "f" });
  });

  test("a worker's claims whose answer never reached the supervisor are forgotten with their lapse, not kept for the worker's life", async () => {
    // Lapsed after 500 ms: the claims made after the wait are released within it, however slow the machine.
    const held = supervisorHolding(500);
    const releases: string[] = [];
    const release = { idempotency: held.idempotency.release, recordIds: held.recordIds.release };
    held.idempotency.release = (id) => {
      releases.push(id);
      return release.idempotency.call(held.idempotency, id);
    };
    held.recordIds.release = (tenant, claimant) => {
      releases.push(claimant);
      return release.recordIds.call(held.recordIds, tenant, claimant);
    };
    const link = channel();
    answerStoreCalls(link.supervisor, held);
    const { options } = failOpens();
    const worker = supervisorStores(link.worker, options);
    // Claimed, and the answer or release dropped in the worker (at its bound of calls in flight).
    expect(await worker.idempotency.claim("acme\nlost", "f")).toEqual({ state: "claimed" });
    expect(await worker.recordIds.claim("acme", ["r1"], "request-lost", 60_000)).toEqual(["new"]);
    await Bun.sleep(600);
    // Claimed within the pending time: the worker's exit still frees these.
    expect(await worker.idempotency.claim("acme\nrunning", "f")).toEqual({ state: "claimed" });
    expect(await worker.recordIds.claim("acme", ["r2"], "request-running", 60_000)).toEqual(["new"]);
    link.workerGone();
    expect(releases.sort()).toEqual(["acme\nrunning", "request-running"]);
  });

  test("a supervisor that does not answer: each call fails open at its deadline, counted", async () => {
    const link = channel();
    answerStoreCalls(link.supervisor, supervisorHolding());
    link.mute();
    const { counts, options } = failOpens(100);
    const stores = supervisorStores(link.worker, options);
    const start = Date.now();
    const [claim, ids] = await Promise.all([
      stores.idempotency.claim("acme\nkey", "f"),
      stores.recordIds.claim("acme", ["r1", "r2"], "request", 60_000),
    ]);
    expect(Date.now() - start).toBeGreaterThanOrEqual(95);
    expect(claim).toEqual({ state: "claimed" });
    expect(ids).toEqual(["new", "new"]);
    expect(counts).toEqual({ idempotency: 1, recordIds: 1 });
  });

  test("a supervisor gone: calls waiting fail open at once, and later ones without asking", async () => {
    const link = channel();
    link.mute();
    const { counts, options } = failOpens();
    const stores = supervisorStores(link.worker, { ...options, timeoutMs: 60_000 });
    const waiting = stores.idempotency.claim("acme\nkey", "f");
    link.disconnect();
    expect(await waiting).toEqual({ state: "claimed" });
    expect(await stores.recordIds.claim("acme", ["r1"], "request", 60_000)).toEqual(["new"]);
    await stores.recordIds.confirm("acme", "request", 60_000);
    expect(counts).toEqual({ idempotency: 1, recordIds: 2 });
  });
});
