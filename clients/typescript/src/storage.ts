import { uuidv7 } from "./ids.js";

/** One unsent record as the client keeps it: its id and its NDJSON line (which holds the same id). */
export interface StoredRecord {
  id: string;
  line: string;
  /**
   * The Idempotency-Key of the batch it was sent in, once it was: the records
   * stored under one key are resent, after a restart, as that batch again.
   */
  key?: string;
}

/**
 * Where an `EventClient` keeps records until the gateway answered for them,
 * so that a reload or a restart does not lose them. Writes may be batched;
 * `flush()` resolves once everything asked so far is written.
 */
export interface QueueStorage {
  /**
   * Records an earlier run left unsent, oldest first (in a browser queue: none
   * another open tab holds). `report` is called once with what stops later
   * writes (`fileQueue`: its lock taken over, or the queue closed).
   */
  load(report?: (error: unknown) => void): Promise<StoredRecord[]>;
  add(records: StoredRecord[]): void;
  remove(ids: string[]): void;
  flush(): Promise<void>;
  /**
   * Writes what is asked, then lets the storage go: `fileQueue` its file, for
   * another queue to open; a browser queue its tab's Web Lock, so another tab
   * may take its records.
   */
  close?(): Promise<void>;
}

export type Operation = { add: StoredRecord[] } | { remove: string[] };

/** The parts of `localStorage` used here (declared, not taken from the DOM library, so servers typecheck too). */
export interface StorageLike {
  readonly length: number;
  key(index: number): string | null;
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** The parts of IndexedDB used here. */
interface IdbRequest<T> {
  readonly result: T;
  readonly error: unknown;
  onsuccess: (() => void) | null;
  onerror: (() => void) | null;
}
interface IdbOpenRequest extends IdbRequest<IdbDatabase> {
  onupgradeneeded: (() => void) | null;
  onblocked: (() => void) | null;
}
interface IdbTransaction {
  readonly error: unknown;
  objectStore(name: string): IdbObjectStore;
  oncomplete: (() => void) | null;
  onerror: (() => void) | null;
  onabort: (() => void) | null;
}
interface IdbObjectStore {
  put(value: unknown): unknown;
  delete(key: string): unknown;
  getAll(): IdbRequest<unknown[]>;
}
interface IdbDatabase {
  createObjectStore(name: string, options: { keyPath: string }): unknown;
  transaction(name: string, mode?: "readonly" | "readwrite"): IdbTransaction;
}
export interface IdbFactoryLike {
  open(name: string, version: number): IdbOpenRequest;
}

interface StorageGlobals {
  indexedDB?: IdbFactoryLike;
  localStorage?: StorageLike;
}

/**
 * Collects the operations of one tick and hands them to `write` as one
 * batch; batches are written one after the other, in order.
 */
export class WriteBatcher {
  #pending: Operation[] = [];
  #chain: Promise<void> = Promise.resolve();
  #scheduled = false;

  readonly #write: (operations: Operation[]) => Promise<void> | void;

  constructor(write: (operations: Operation[]) => Promise<void> | void) {
    this.#write = write;
  }

  push(operation: Operation): void {
    this.#pending.push(operation);
    if (this.#scheduled) return;
    this.#scheduled = true;
    this.#chain = this.#chain.then(async () => {
      // One macrotask later, so records enqueued together land in one write.
      await new Promise((resolve) => setTimeout(resolve, 0));
      this.#scheduled = false;
      const operations = this.#pending;
      this.#pending = [];
      try {
        await this.#write(operations);
      } catch {
        // Storage is best effort (a full quota, a private window): the records still go from memory.
      }
    });
  }

  flush(): Promise<void> {
    return this.#chain;
  }
}

/** The parts of the Web Locks API (`navigator.locks`) used here. */
export interface LockManagerLike {
  request(name: string, callback: () => Promise<unknown>): Promise<unknown>;
  query(): Promise<{ held?: Array<{ name?: string }> }>;
}

/**
 * A browser page's writes to a queue shared by the tabs of one origin, and
 * which stored records it may take. Each row names the page that wrote it,
 * and a page holds a Web Lock of that name while it has rows stored (only
 * then: a page holding a lock may be kept out of the back/forward cache, or
 * evicted from it; and `close()` lets it go, for another tab to take what is
 * left). `load()` takes the page's own rows and those whose writer holds no
 * lock (its page closed or crashed, or an older client wrote it without a
 * name), under the queue's lock, so two pages loading at once never take the
 * same ones, and marks them the page's own before it lets go. Without Web
 * Locks (an old browser, a page not served over https or from localhost)
 * every page takes every row, as before: tabs of such a page may send each
 * other's records twice. `write` stores a batch of operations, with this
 * page's lock held while it has rows.
 */
function pageQueue(queue: string, write: (operations: Operation[]) => Promise<void> | void) {
  const locks = (globalThis as { navigator?: { locks?: LockManagerLike } }).navigator?.locks;
  /** The name of this page's lock, written in its rows. */
  const name = `edge-gateway-queue:${uuidv7()}`;
  /** This page's stored rows, by id. */
  const rows = new Map<string, StoredRecord>();
  /** This page's lock, once asked for: resolves with its release when held. */
  let holding: Promise<() => void> | undefined;
  const release = () => {
    void holding?.then((release) => release());
    holding = undefined;
  };
  const batcher = new WriteBatcher(async (operations) => {
    for (const operation of operations) {
      if ("add" in operation) for (const record of operation.add) rows.set(record.id, record);
      else for (const id of operation.remove) rows.delete(id);
    }
    // Taken before its first row is written, let go once none is left.
    if (locks && rows.size > 0)
      holding ??= new Promise((held) => {
        locks
          .request(name, () => new Promise<void>((release) => held(() => release())))
          .catch(() => held(() => {}));
      });
    await holding;
    await write(operations);
    if (rows.size === 0) release();
  });
  return {
    name,
    rows,
    /**
     * Calls `take`, under the queue's lock, with the test of whether this page
     * takes a row of `writer`; the records it returns are written as this
     * page's, then `moved` is called, before the queue's lock is let go.
     */
    claim: (take: (taken: (writer?: string) => boolean) => Promise<StoredRecord[]>, moved?: () => void) => {
      const claimed = async (taken: (writer?: string) => boolean) => {
        const records = await take(taken);
        batcher.push({ add: records });
        await batcher.flush();
        moved?.();
        return records;
      };
      if (!locks) return claimed(() => true);
      return locks.request(`edge-gateway-queue:${queue}`, async () => {
        const held = new Set((await locks.query()).held?.map((lock) => lock.name));
        return claimed((writer) => writer === name || !held.has(writer));
      }) as Promise<StoredRecord[]>;
    },
    storage: {
      add: (records: StoredRecord[]) => batcher.push({ add: records }),
      remove: (ids: string[]) => batcher.push({ remove: ids }),
      flush: () => batcher.flush(),
      close: () => batcher.flush().then(release),
    },
  };
}

/** A row of the localStorage queue: id, line, the page that wrote it, the key of the batch it was sent in. */
type Row = [string, string, string?, string?];

/**
 * localStorage (synchronous, small quota, but everywhere): each page keeps
 * its rows (`[id, line, writer, key?]`) under a key of its own,
 * `<key>:<its lock's name>`, written whole from memory and by no other page
 * while it holds its lock. So tabs never read, change and write back one
 * value: a tab whose copy of it lagged (Chromium gives each renderer its own,
 * which other tabs' writes reach later) would bring back rows another tab
 * removed. `load()` moves the rows it takes (from `<key>`, where older
 * clients kept every row, and from the keys of pages that are gone) under
 * the page's key before it removes them where they were.
 */
export function localStorageQueue(
  key: string,
  storage: StorageLike = (globalThis as StorageGlobals).localStorage as StorageLike,
): QueueStorage {
  const keep = (name: string, rows: Row[]) =>
    rows[0] ? storage.setItem(name, JSON.stringify(rows)) : storage.removeItem(name);
  const write = () =>
    keep(
      own,
      [...page.rows.values()].map(({ id, line, key }) => [id, line, page.name, key]),
    );
  const page = pageQueue(key, write);
  const own = `${key}:${page.name}`;
  return {
    load: () => {
      /** The keys rows were taken from, with the rows left there: rewritten once the rows are under this page's key. */
      const left: Array<[string, Row[]]> = [];
      return page.claim(
        async (taken) => {
          const records: StoredRecord[] = [];
          const names: string[] = [];
          for (let index = 0; index < storage.length; index++) names.push(storage.key(index) as string);
          // The queue's key, then the pages' keys, oldest page first (their names are UUIDv7).
          for (const name of names.sort())
            if (name === key || (name.startsWith(`${key}:edge-gateway-queue:`) && name !== own))
              try {
                const found: Row[] = JSON.parse(storage.getItem(name) as string);
                const kept = found.filter(
                  ([id, line, writer, key]) =>
                    !taken(writer) || !records.push({ id, line, key: key ?? undefined }),
                );
                if (kept.length < found.length) left.push([name, kept]);
              } catch {
                // A value that is not ours, or a corrupt one: left alone.
              }
          return records;
        },
        () => {
          for (const [name, rows] of left) keep(name, rows);
          // Written again once those are gone: beside them, the taken rows may not have fit (a full quota).
          // If they still do not, they go from memory only, as after any write past the quota.
          try {
            write();
          } catch {}
        },
      );
    },
    ...page.storage,
  };
}

function request<T>(req: IdbRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

/**
 * IndexedDB: a database `name` with one object store, a row per record keyed
 * by id, with the page that wrote it and an `order` field so records come
 * back in the order they were enqueued.
 */
export function indexedDbQueue(
  name: string,
  factory: IdbFactoryLike = (globalThis as StorageGlobals).indexedDB as IdbFactoryLike,
): QueueStorage {
  const opening = new Promise<IdbDatabase>((resolve, reject) => {
    const open = factory.open(name, 1);
    open.onupgradeneeded = () => open.result.createObjectStore("records", { keyPath: "id" });
    open.onsuccess = () => resolve(open.result);
    open.onerror = () => reject(open.error);
    open.onblocked = () => reject(new Error("IndexedDB blocked"));
  });
  let order = Date.now() * 1000;
  /** Each stored row's order, kept when the row is written again (with its batch's key). */
  const orders = new Map<string, number>();
  const page = pageQueue(name, async (operations) => {
    const transaction = (await opening).transaction("records", "readwrite");
    const store = transaction.objectStore("records");
    for (const operation of operations) {
      if ("add" in operation)
        for (const record of operation.add) {
          if (!orders.has(record.id)) orders.set(record.id, order++);
          store.put({ ...record, order: orders.get(record.id), writer: page.name });
        }
      else
        for (const id of operation.remove) {
          orders.delete(id);
          store.delete(id);
        }
    }
    await new Promise<void>((resolve, reject) => {
      transaction.oncomplete = () => resolve();
      transaction.onerror = () => reject(transaction.error);
      transaction.onabort = () => reject(transaction.error);
    });
  });
  return {
    async load() {
      // Opened before the queue's lock is asked for: a database that never opens holds up this tab only.
      const db = await opening;
      // Marked this page's (in their order, after its own earlier rows) before the queue's lock is let go.
      return page.claim(async (taken) => {
        const rows = (await request(db.transaction("records").objectStore("records").getAll())) as Array<
          StoredRecord & { order: number; writer?: string }
        >;
        rows.sort((a, b) => a.order - b.order);
        return rows.filter((row) => taken(row.writer)).map(({ id, line, key }) => ({ id, line, key }));
      });
    },
    ...page.storage,
  };
}

/**
 * The storage for a browser page: IndexedDB where it opens, else localStorage
 * (a private window, an old browser). Throws where neither exists: on Node
 * and Bun use `fileQueue` from `@edge-gateway/client/file-queue`.
 */
export function browserQueue(name = "edge-gateway-events"): QueueStorage {
  const page = globalThis as StorageGlobals;
  /** Where IndexedDB is missing or does not open. */
  const fallback = () => {
    if (!page.localStorage) throw new Error("no IndexedDB or localStorage: use fileQueue");
    return localStorageQueue(name, page.localStorage);
  };
  let chosen: Promise<QueueStorage>;
  if (page.indexedDB) {
    const idb = indexedDbQueue(name, page.indexedDB);
    chosen = idb.load().then(() => idb, fallback);
  } else chosen = Promise.resolve(fallback());
  // Operations asked for before the choice is made wait for it, in order.
  let chain: Promise<unknown> = chosen;
  const later = (operation: (storage: QueueStorage) => void) => {
    chain = chain.then(() => chosen.then(operation)).catch(() => {});
  };
  /** Once the operations asked for so far were handed on: `last` of the chosen storage. */
  const after = (last: (storage: QueueStorage) => Promise<void> | undefined) => async () => {
    await chain;
    await chosen.then(last).catch(() => {});
  };
  return {
    load: () => chosen.then((storage) => storage.load()),
    add: (records) => later((storage) => storage.add(records)),
    remove: (ids) => later((storage) => storage.remove(ids)),
    flush: after((storage) => storage.flush()),
    close: after((storage) => storage.close?.()),
  };
}
