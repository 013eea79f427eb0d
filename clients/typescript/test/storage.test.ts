import { afterEach, describe, expect, test } from "bun:test";
import { type LockManagerLike, localStorageQueue } from "../src/storage.js";
import { memoryStorage } from "./support/memory-storage.js";

/**
 * Web Locks of one origin, as its tabs see them: exclusive locks by name,
 * granted in order; a tab that closes lets go of every lock it holds or waits for.
 */
function origin() {
  const holders = new Map<string, object>();
  /** Per name, when the last request made for it ends (done, or its tab closed). */
  const ends = new Map<string, Promise<unknown>>();
  const closers: Array<{ tab: object; close: () => void }> = [];
  return {
    tab(): LockManagerLike & { close(): void } {
      const tab = {};
      return {
        request(name, callback) {
          const closed = new Promise<void>((close) => closers.push({ tab, close }));
          const granted = (ends.get(name) ?? Promise.resolve()).then(async () => {
            holders.set(name, tab);
            try {
              return await callback();
            } finally {
              if (holders.get(name) === tab) holders.delete(name);
            }
          });
          ends.set(
            name,
            Promise.race([granted, closed]).catch(() => {}),
          );
          return granted;
        },
        query: async () => ({ held: [...holders.keys()].map((name) => ({ name })) }),
        close() {
          for (const [name, holder] of holders) if (holder === tab) holders.delete(name);
          for (const closer of closers) if (closer.tab === tab) closer.close();
        },
      };
    },
  };
}

const realNavigator = Object.getOwnPropertyDescriptor(globalThis, "navigator");
/** The page's navigator.locks from now on (the queues read it when made); undefined: a browser without it. */
function useLocks(locks: LockManagerLike | undefined) {
  Object.defineProperty(globalThis, "navigator", { value: { locks }, configurable: true, writable: true });
}
afterEach(() => {
  if (realNavigator) Object.defineProperty(globalThis, "navigator", realNavigator);
});

const record = (id: string) => ({ id, line: JSON.stringify({ id, type: "click", data: {} }) });
const idsOf = (records: Array<{ id: string }>) => records.map((stored) => stored.id);
/** The ids stored in `backing` for the queue `events`, under any of its keys. */
const storedIds = (backing: { items: Map<string, string> }) =>
  [...backing.items]
    .filter(([key]) => key === "events" || key.startsWith("events:"))
    .flatMap(([, value]) => (JSON.parse(value) as Array<[string]>).map(([id]) => id))
    .sort();

/**
 * One tab's view of an origin's localStorage as Chromium keeps it: each
 * renderer reads a copy of its own, which another tab's writes reach later
 * (`sync()`), not before the next read. So a tab may write a value it read
 * before another tab's write.
 */
function tabView(shared: Map<string, string>) {
  const copy = new Map(shared);
  return {
    get length() {
      return copy.size;
    },
    key: (index: number) => [...copy.keys()][index] ?? null,
    getItem: (key: string) => copy.get(key) ?? null,
    setItem(key: string, value: string) {
      copy.set(key, value);
      shared.set(key, value);
    },
    removeItem(key: string) {
      copy.delete(key);
      shared.delete(key);
    },
    sync() {
      copy.clear();
      for (const [key, value] of shared) copy.set(key, value);
    },
  };
}

describe("a queue shared by the tabs of a page (localStorage; IndexedDB in test/e2e/browser.test.ts)", () => {
  test("a tab takes at load its own records and those of closed tabs, never those of a tab still open", async () => {
    const backing = memoryStorage();
    const locks = origin();
    const first = locks.tab();
    useLocks(first);
    const a = localStorageQueue("events", backing);
    expect(await a.load()).toEqual([]);
    a.add([record("a1"), record("a2")]);
    await a.flush();

    const second = locks.tab();
    useLocks(second);
    const b = localStorageQueue("events", backing);
    // The first tab is open and sends its own records: the second does not take them.
    expect(await b.load()).toEqual([]);
    b.add([record("b1")]);
    await b.flush();
    a.add([record("a3")]);
    await a.flush();
    // No tab overwrote the other's records.
    expect(storedIds(backing)).toEqual(["a1", "a2", "a3", "b1"]);

    // The first tab closes with its records unsent: the next tab to load takes them, and only them.
    first.close();
    useLocks(locks.tab());
    const c = localStorageQueue("events", backing);
    expect(idsOf(await c.load())).toEqual(["a1", "a2", "a3"]);
    useLocks(locks.tab());
    expect(await localStorageQueue("events", backing).load()).toEqual([]);

    // The second tab sends its record: it leaves the queue; the third tab's are still there.
    b.remove(["b1"]);
    await b.flush();
    useLocks(undefined);
    expect(idsOf(await localStorageQueue("events", backing).load())).toEqual(["a1", "a2", "a3"]);
  });

  test("tabs whose copies of localStorage lag (other processes) never bring back a record another tab removed", async () => {
    const shared = new Map<string, string>();
    const locks = origin();
    useLocks(locks.tab());
    const aView = tabView(shared);
    const a = localStorageQueue("events", aView);
    await a.load();
    useLocks(locks.tab());
    const bView = tabView(shared);
    const b = localStorageQueue("events", bView);
    await b.load();
    a.add([record("a1"), record("a2")]);
    await a.flush();
    bView.sync();
    // The first tab sends a1; the second writes before that write reached its copy.
    a.remove(["a1"]);
    await a.flush();
    b.add([record("b1")]);
    await b.flush();
    aView.sync();
    bView.sync();
    expect(storedIds({ items: shared })).toEqual(["a2", "b1"]);
  });

  test("close() lets the tab's lock go: another tab takes its unsent records at once", async () => {
    const backing = memoryStorage();
    const locks = origin();
    const tab = locks.tab();
    useLocks(tab);
    const closing = localStorageQueue("events", backing);
    await closing.load();
    closing.add([record("a1")]);
    await closing.flush();
    useLocks(locks.tab());
    expect(await localStorageQueue("events", backing).load()).toEqual([]);
    await closing.close?.();
    await Bun.sleep(0);
    expect((await tab.query()).held).toEqual([]);
    useLocks(locks.tab());
    expect(idsOf(await localStorageQueue("events", backing).load())).toEqual(["a1"]);
  });

  test.each([
    [1.5, ["a1", "a2", "a3"]],
    // No room even once: taken all the same, and sent from memory.
    [0.9, []],
  ])(
    "records a tab takes over stay stored when its copy of them does not fit beside theirs (quota %p of them)",
    async (share, left) => {
      const backing = memoryStorage();
      const locks = origin();
      const gone = locks.tab();
      useLocks(gone);
      const closed = localStorageQueue("events", backing);
      await closed.load();
      closed.add([record("a1"), record("a2"), record("a3")]);
      await closed.flush();
      gone.close();
      // Room for those rows once, not twice (localStorage throws QuotaExceededError past it).
      const quota =
        share * [...backing.items].reduce((size, [key, value]) => size + key.length + value.length, 0);
      const full = {
        ...backing,
        get length() {
          return backing.length;
        },
        setItem(key: string, value: string) {
          let size = key.length + value.length;
          for (const [other, stored] of backing.items)
            if (other !== key) size += other.length + stored.length;
          if (size > quota) throw new Error("QuotaExceededError");
          backing.setItem(key, value);
        },
      };
      useLocks(locks.tab());
      expect(idsOf(await localStorageQueue("events", full).load())).toEqual(["a1", "a2", "a3"]);
      // Stored still (under the new tab's key), so a reload or a crash of this tab does not lose them.
      expect(storedIds(backing)).toEqual(left);
    },
  );

  test("a tab holds its lock only while it has records stored (a page holding one may lose the back/forward cache)", async () => {
    const backing = memoryStorage();
    const locks = origin();
    const tab = locks.tab();
    useLocks(tab);
    const queue = localStorageQueue("events", backing);
    const held = async () => (await tab.query()).held?.length ?? 0;
    expect(await held()).toBe(0);
    queue.add([record("a1")]);
    await queue.flush();
    expect(await held()).toBe(1);
    queue.remove(["a1"]);
    await queue.flush();
    await Bun.sleep(0);
    expect(await held()).toBe(0);
  });

  test("without Web Locks every tab takes every record, as before; rows of an older client are taken too", async () => {
    const backing = memoryStorage();
    backing.setItem("events", JSON.stringify([[record("old").id, record("old").line]]));
    useLocks(undefined);
    const a = localStorageQueue("events", backing);
    a.add([record("a1")]);
    await a.flush();
    expect(idsOf(await localStorageQueue("events", backing).load())).toEqual(["old", "a1"]);
  });

  test("rows an older client kept under the queue's key: those of a tab gone are taken and moved, those of an open tab stay", async () => {
    const backing = memoryStorage();
    const locks = origin();
    const open = locks.tab();
    useLocks(open);
    let release = () => {};
    void open.request("edge-gateway-queue:open-tab", () => new Promise<void>((done) => (release = done)));
    await Bun.sleep(0);
    const row = (id: string, writer?: string) => [id, record(id).line, writer, null];
    backing.setItem(
      "events",
      JSON.stringify([
        row("old"),
        row("gone", "edge-gateway-queue:gone-tab"),
        row("kept", "edge-gateway-queue:open-tab"),
      ]),
    );
    useLocks(locks.tab());
    expect(idsOf(await localStorageQueue("events", backing).load())).toEqual(["old", "gone"]);
    expect(JSON.parse(backing.items.get("events") ?? "[]").map(([id]: [string]) => id)).toEqual(["kept"]);
    expect(storedIds(backing)).toEqual(["gone", "kept", "old"]);
    release();
  });
});
