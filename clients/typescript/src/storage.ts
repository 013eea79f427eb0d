/** One unsent record as the client keeps it: its id and its NDJSON line (which holds the same id). */
export interface StoredRecord {
  id: string;
  line: string;
}

/**
 * Where an `EventClient` keeps records until the gateway answered for them,
 * so that a reload or a restart does not lose them. Writes may be batched;
 * `flush()` resolves once everything asked so far is written.
 */
export interface QueueStorage {
  /** Records an earlier run left unsent, oldest first. */
  load(): Promise<StoredRecord[]>;
  add(records: StoredRecord[]): void;
  remove(ids: string[]): void;
  flush(): Promise<void>;
}

type Operation = { add: StoredRecord[] } | { remove: string[] };

/** The parts of `localStorage` used here (declared, not taken from the DOM library, so servers typecheck too). */
export interface StorageLike {
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

/** Applies operations to an id → line map, keeping insertion order (the order records were enqueued). */
export function apply(records: Map<string, string>, operations: Operation[]): void {
  for (const operation of operations) {
    if ("add" in operation) for (const { id, line } of operation.add) records.set(id, line);
    else for (const id of operation.remove) records.delete(id);
  }
}

/** localStorage: one key holding every unsent record (synchronous, small quota, but everywhere). */
export function localStorageQueue(
  key: string,
  storage: StorageLike = (globalThis as StorageGlobals).localStorage as StorageLike,
): QueueStorage {
  const records = new Map<string, string>();
  let loaded = false;
  const read = () => {
    if (loaded) return;
    loaded = true;
    try {
      const saved = JSON.parse(storage.getItem(key) ?? "[]") as Array<[string, string]>;
      for (const [id, line] of saved) records.set(id, line);
    } catch {
      // A value that is not ours, or a corrupt one: start empty.
    }
  };
  const batcher = new WriteBatcher((operations) => {
    read();
    apply(records, operations);
    if (records.size === 0) storage.removeItem(key);
    else storage.setItem(key, JSON.stringify([...records]));
  });
  return {
    async load() {
      read();
      return [...records].map(([id, line]) => ({ id, line }));
    },
    add: (added) => batcher.push({ add: added }),
    remove: (ids) => batcher.push({ remove: ids }),
    flush: () => batcher.flush(),
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
 * by id, and an `order` field so records come back in the order they were enqueued.
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
  const batcher = new WriteBatcher(async (operations) => {
    const db = await opening;
    const transaction = db.transaction("records", "readwrite");
    const store = transaction.objectStore("records");
    for (const operation of operations) {
      if ("add" in operation)
        for (const { id, line } of operation.add) store.put({ id, line, order: order++ });
      else for (const id of operation.remove) store.delete(id);
    }
    await new Promise<void>((resolve, reject) => {
      transaction.oncomplete = () => resolve();
      transaction.onerror = () => reject(transaction.error);
      transaction.onabort = () => reject(transaction.error);
    });
  });
  return {
    async load() {
      const db = await opening;
      const rows = (await request(db.transaction("records").objectStore("records").getAll())) as Array<
        StoredRecord & { order: number }
      >;
      rows.sort((a, b) => a.order - b.order);
      const last = rows.at(-1);
      if (last) order = Math.max(order, last.order + 1);
      return rows.map(({ id, line }) => ({ id, line }));
    },
    add: (added) => batcher.push({ add: added }),
    remove: (ids) => batcher.push({ remove: ids }),
    flush: () => batcher.flush(),
  };
}

/**
 * The storage for a browser page: IndexedDB where it opens, else localStorage
 * (a private window, an old browser). Throws where neither exists: on Node
 * and Bun use `fileQueue` from `@edge-gateway/client/file-queue`.
 */
export function browserQueue(name = "edge-gateway-events"): QueueStorage {
  const page = globalThis as StorageGlobals;
  if (!page.indexedDB && !page.localStorage) {
    throw new Error("neither IndexedDB nor localStorage here: use fileQueue on Node and Bun");
  }
  let chosen: Promise<QueueStorage>;
  if (page.indexedDB) {
    const idb = indexedDbQueue(name, page.indexedDB);
    chosen = idb.load().then(
      () => idb,
      () => {
        if (!page.localStorage) throw new Error("IndexedDB failed to open and there is no localStorage");
        return localStorageQueue(name, page.localStorage);
      },
    );
  } else chosen = Promise.resolve(localStorageQueue(name, page.localStorage as StorageLike));
  // Operations asked for before the choice is made wait for it, in order.
  let chain: Promise<unknown> = chosen;
  const later = (operation: (storage: QueueStorage) => void) => {
    chain = chain.then(() => chosen.then(operation)).catch(() => {});
  };
  return {
    load: () => chosen.then((storage) => storage.load()),
    add: (records) => later((storage) => storage.add(records)),
    remove: (ids) => later((storage) => storage.remove(ids)),
    flush: async () => {
      await chain;
      await chosen.then((storage) => storage.flush()).catch(() => {});
    },
  };
}
