import type { IdempotencyClaim, IdempotencyStore, StoredReply } from "../ports/idempotency.ts";
import type { RecordIdStore, RecordIdVerdict } from "../ports/record-ids.ts";

/**
 * With WORKERS > 1 and no Redis, the workers' Idempotency-Key answers and
 * record ids live in the supervisor: the kernel hands each connection to any
 * worker, so a store of each worker's own would let a retry that reaches
 * another worker be written again. A worker asks over its IPC channel; the
 * supervisor answers from the one memory store of each kind.
 */

/** One side of an IPC channel: a worker's `process`, or the supervisor's handle on a child. */
export interface IpcEndpoint {
  readonly connected: boolean;
  send(message: unknown, callback: (error: Error | null) => void): void;
  on(event: "message", listener: (message: unknown) => void): void;
  on(event: "disconnect", listener: () => void): void;
}

const CALL = "store-call";
const REPLY = "store-reply";

type StoreName = "idempotency" | "record-ids";

interface StoreCall {
  type: typeof CALL;
  ref: number;
  store: StoreName;
  method: string;
  args: unknown[];
}

interface StoreReply {
  type: typeof REPLY;
  ref: number;
  result: unknown;
}

const isCall = (message: unknown): message is StoreCall =>
  (message as { type?: unknown } | null)?.type === CALL;
const isReply = (message: unknown): message is StoreReply =>
  (message as { type?: unknown } | null)?.type === REPLY;

export interface SupervisorStores {
  idempotency: IdempotencyStore;
  recordIds: RecordIdStore;
}

/** The stores the supervisor holds for its workers. */
export interface HeldStores extends SupervisorStores {
  /** How long a claim of either store holds without its request's answer (IDEMPOTENCY_PENDING_SEC). */
  pendingMs: number;
}

/**
 * Entries that lapse `lapseMs` after they were last set, as the claims they stand for lapse in the
 * store: a worker's answer or release that never reached the supervisor (the worker at its bound of
 * calls in flight, a failed send) would otherwise leave its entry for the worker's life. Oldest
 * first (a set re-inserts at the young end), so each set sweeps the lapsed ones from the front.
 */
class LapsingEntries<V> {
  private readonly entries = new Map<string, { value: V; lapsesAt: number }>();

  constructor(private readonly lapseMs: number) {}

  set(key: string, value: V): void {
    const now = Date.now();
    for (const [oldest, entry] of this.entries) {
      if (entry.lapsesAt > now) break;
      this.entries.delete(oldest);
    }
    this.entries.delete(key);
    this.entries.set(key, { value, lapsesAt: now + this.lapseMs });
  }

  get(key: string): V | undefined {
    const entry = this.entries.get(key);
    return entry !== undefined && entry.lapsesAt > Date.now() ? entry.value : undefined;
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  /** Removes the entries `matches` picks and returns those that had not lapsed. */
  take(matches: (value: V) => boolean): Array<[string, V]> {
    const now = Date.now();
    const taken: Array<[string, V]> = [];
    for (const [key, entry] of this.entries) {
      if (!matches(entry.value)) continue;
      this.entries.delete(key);
      if (entry.lapsesAt > now) taken.push([key, entry.value]);
    }
    return taken;
  }
}

/**
 * Which worker holds each Idempotency-Key claim of a supervisor's store, so that a worker that
 * dies mid-request (killed, crashed) frees its claims at once: its retry, which the kernel hands
 * to another worker, would otherwise get 409 for the whole pending time. A claim another worker
 * took over (the first one's lapsed) is that worker's: the dead one frees only its own. Entries
 * leave with their request's answer or release, with their worker, or with the claim's lapse.
 */
const claimHolders = new WeakMap<IdempotencyStore, LapsingEntries<IpcEndpoint>>();

/** In the supervisor: answers one worker's store calls from `stores`, and frees its claims when it is gone. */
export function answerStoreCalls(worker: IpcEndpoint, stores: HeldStores): void {
  const keyHolders =
    claimHolders.get(stores.idempotency) ?? new LapsingEntries<IpcEndpoint>(stores.pendingMs);
  claimHolders.set(stores.idempotency, keyHolders);
  const settled = (id: string) => {
    if (keyHolders.get(id) === worker) keyHolders.delete(id);
  };
  /** Record id claims of this worker's requests still writing, as `tenant` and request name. */
  const writing = new LapsingEntries<{ tenant: string; claimant: string }>(stores.pendingMs);
  const methods: Record<StoreName, Record<string, (...args: never[]) => Promise<unknown>>> = {
    idempotency: {
      claim: async (id: string, fingerprint: string) => {
        const claim = await stores.idempotency.claim(id, fingerprint);
        if (claim.state === "claimed") keyHolders.set(id, worker);
        return claim;
      },
      complete: (id: string, fingerprint: string, reply: StoredReply) => {
        settled(id);
        return stores.idempotency.complete(id, fingerprint, reply);
      },
      release: (id: string) => {
        settled(id);
        return stores.idempotency.release(id);
      },
    },
    "record-ids": {
      claim: (tenant: string, ids: string[], claimant: string, windowMs: number) => {
        writing.set(`${tenant}\n${claimant}`, { tenant, claimant });
        return stores.recordIds.claim(tenant, ids, claimant, windowMs);
      },
      confirm: (tenant: string, claimant: string, windowMs: number) => {
        writing.delete(`${tenant}\n${claimant}`);
        return stores.recordIds.confirm(tenant, claimant, windowMs);
      },
      release: (tenant: string, claimant: string) => {
        writing.delete(`${tenant}\n${claimant}`);
        return stores.recordIds.release(tenant, claimant);
      },
      forget: (tenant: string, claimant: string, ids: string[]) =>
        stores.recordIds.forget(tenant, claimant, ids),
    },
  };
  worker.on("disconnect", () => {
    // Its requests died with it: nothing of theirs will answer, release or confirm.
    for (const [id] of keyHolders.take((holder) => holder === worker)) void stores.idempotency.release(id);
    for (const [, { tenant, claimant }] of writing.take(() => true))
      void stores.recordIds.release(tenant, claimant);
  });
  worker.on("message", (message) => {
    if (!isCall(message)) return;
    const method = methods[message.store]?.[message.method];
    // An unknown call (a worker of another version) gets no answer: the worker's deadline fails it open.
    if (!method) return;
    void method(...(message.args as never[])).then((result) => {
      // A worker gone meanwhile: the callback keeps a failed send from being an 'error' event.
      if (worker.connected)
        worker.send({ type: REPLY, ref: message.ref, result } satisfies StoreReply, () => {});
    });
  });
}

/** A supervisor that does not answer within this is taken as gone: the call fails open. */
export const SUPERVISOR_CALL_TIMEOUT_MS = 1000;

/** Calls a worker waits on at most; past it, and past the deadline, a call fails open. */
const MAX_CALLS_IN_FLIGHT = 10_000;

/** A worker's calls to the supervisor's stores, each settled by its reply or by `fallback` at the deadline. */
class SupervisorCalls {
  private readonly waiting = new Map<
    number,
    { resolve: (result: unknown) => void; timer: ReturnType<typeof setTimeout> }
  >();
  private nextRef = 0;

  constructor(
    private readonly supervisor: IpcEndpoint,
    private readonly timeoutMs: number,
    private readonly onFailOpen: () => void,
  ) {
    supervisor.on("message", (message) => {
      if (!isReply(message)) return;
      this.settle(message.ref, message.result);
    });
    supervisor.on("disconnect", () => {
      for (const ref of [...this.waiting.keys()]) this.failOpen(ref);
    });
  }

  /** The supervisor's answer, or `fallback` when it cannot give one in time (fails open, as Redis stores do). */
  call<T>(store: StoreName, method: string, args: unknown[], fallback: T): Promise<T> {
    if (!this.supervisor.connected || this.waiting.size >= MAX_CALLS_IN_FLIGHT) {
      this.onFailOpen();
      return Promise.resolve(fallback);
    }
    const ref = this.nextRef++;
    return new Promise<T>((resolve) => {
      // Measured from the call: a supervisor that is stuck holds no request longer than this.
      const timer = setTimeout(() => this.failOpen(ref), this.timeoutMs);
      this.waiting.set(ref, {
        resolve: (result) => resolve(result === FAILED_OPEN ? fallback : (result as T)),
        timer,
      });
      this.supervisor.send({ type: CALL, ref, store, method, args } satisfies StoreCall, (error) => {
        if (error) this.failOpen(ref);
      });
    });
  }

  private failOpen(ref: number): void {
    if (this.waiting.has(ref)) this.onFailOpen();
    this.settle(ref, FAILED_OPEN);
  }

  private settle(ref: number, result: unknown): void {
    const waiter = this.waiting.get(ref);
    if (!waiter) return;
    this.waiting.delete(ref);
    clearTimeout(waiter.timer);
    waiter.resolve(result);
  }
}

const FAILED_OPEN = Symbol("failed open");
const CLAIMED: IdempotencyClaim = Object.freeze({ state: "claimed" });

export interface WorkerStoreOptions {
  /** How long a call waits for the supervisor before it fails open (SUPERVISOR_CALL_TIMEOUT_MS). */
  timeoutMs: number;
  onIdempotencyFailOpen: () => void;
  onRecordIdsFailOpen: () => void;
}

/** In a worker: the supervisor's stores, reached over `supervisor` (the worker's `process`). */
export function supervisorStores(supervisor: IpcEndpoint, options: WorkerStoreOptions): SupervisorStores {
  const idempotencyCalls = new SupervisorCalls(supervisor, options.timeoutMs, options.onIdempotencyFailOpen);
  const recordIdCalls = new SupervisorCalls(supervisor, options.timeoutMs, options.onRecordIdsFailOpen);
  return {
    idempotency: {
      claim: (id, fingerprint) => idempotencyCalls.call("idempotency", "claim", [id, fingerprint], CLAIMED),
      complete: (id, fingerprint, reply) =>
        idempotencyCalls.call("idempotency", "complete", [id, fingerprint, reply], undefined),
      release: (id) => idempotencyCalls.call("idempotency", "release", [id], undefined),
      // The store lives in the supervisor, which outlives the worker.
      close: () => Promise.resolve(),
    },
    recordIds: {
      claim: (tenant, ids, claimant, windowMs) =>
        recordIdCalls.call<RecordIdVerdict[]>(
          "record-ids",
          "claim",
          [tenant, ids, claimant, windowMs],
          ids.map(() => "new"),
        ),
      confirm: (tenant, claimant, windowMs) =>
        recordIdCalls.call("record-ids", "confirm", [tenant, claimant, windowMs], undefined),
      release: (tenant, claimant) =>
        recordIdCalls.call("record-ids", "release", [tenant, claimant], undefined),
      forget: (tenant, claimant, ids) =>
        recordIdCalls.call("record-ids", "forget", [tenant, claimant, ids], false),
      close: () => Promise.resolve(),
    },
  };
}
