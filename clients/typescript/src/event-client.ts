import { type BackoffOptions, backoffDelay, parseRetryAfter } from "./backoff.js";
import { messageOf } from "./error-message.js";
import { uuidv7 } from "./ids.js";
import { onPageHide } from "./page.js";
import type { QueueStorage, StoredRecord } from "./storage.js";
import { resolveToken, type TokenSource, tokenExpiresAt } from "./token.js";
import { utf8Length } from "./utf8.js";

/** The fields every record may carry besides its type and data. */
export interface RecordFields {
  /** Set by the client (a UUIDv7) when absent, so a retried record can be deduplicated downstream. */
  id?: string;
  ts?: number | string;
  /** Also fans the record out to this channel's subscribers (a `channels` claim must allow it; a gateway set to INGEST_CHANNEL_SCOPE=publish asks the publish scope too). */
  channel?: string;
  key?: string;
}

/** Event types by name, each with the shape of its `data` (see `GatewayEvents`, generated from schemas/). */
export type EventTypes = object;

/** Any type with any data object: the client's default, when it is not given `EventTypes`. */
export type UntypedEvents = Record<string, Record<string, unknown>>;

/**
 * One event, as `POST /v1/events` takes it. With `EventTypes` (an
 * `EventClient<GatewayEvents>`), `type` must be one of them and `data` must
 * have that type's shape, checked at compile time.
 */
export type EventRecord<Events extends EventTypes = UntypedEvents> = {
  [Type in keyof Events & string]: RecordFields & { type: Type; data: Events[Type] };
}[keyof Events & string];

export interface RetryOptions extends BackoffOptions {
  /** Attempts per batch (the first one included) before its records are dropped and reported; a 409 spends none. */
  maxAttempts: number;
  /** A `Retry-After` longer than this is cut to it. */
  maxRetryAfterMs: number;
}

/** Anything shaped like `fetch` (a wrapper for logging or tests, or a polyfill). */
export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

export interface EventClientOptions {
  /** The gateway's base URL, e.g. `https://events.example.com`. */
  url: string;
  token: TokenSource;
  /** A batch is sent once it holds this many records. Default 500. */
  maxBatchRecords?: number;
  /** ... or this many bytes of NDJSON (before compression). Default 512 KiB; the gateway's limit is 1 MiB. */
  maxBatchBytes?: number;
  /** ... or once its oldest record has waited this long. Default 1000 ms. */
  flushIntervalMs?: number;
  /** Records held while the gateway is slow or away; past it new records are dropped. Default 10,000. */
  maxBufferRecords?: number;
  /** The same bound in bytes. Default 5 MiB. */
  maxBufferBytes?: number;
  /** Gzip bodies where the platform has `CompressionStream`. Default true. */
  gzip?: boolean;
  /** Bodies smaller than this are sent uncompressed. Default 1024 bytes. */
  gzipMinBytes?: number;
  retry?: Partial<RetryOptions>;
  /**
   * An attempt with no complete answer within this is abandoned and counted
   * like a network error (retried with the same bytes and Idempotency-Key,
   * so a request the gateway did write is not written twice). Default 30 s.
   */
  requestTimeoutMs?: number;
  /** In a browser page, send what is buffered with `keepalive` when the page is hidden. Default true. */
  flushOnPageHide?: boolean;
  fetch?: FetchLike;
  /**
   * Keeps unsent records across a reload or a restart (`browserQueue()` in a
   * page, `fileQueue(path)` on Node and Bun): they are sent on the next start,
   * once, with their original ids. Default: memory only.
   */
  storage?: QueueStorage;
  /** Records the gateway refused or the client gave up on, and a `storage` that could not be loaded. */
  onError?: (failure: DeliveryFailure) => void;
}

export interface DeliveryFailure {
  /**
   * `rejected`: the gateway refused these records (never retried); `dropped`: the client gave up on them;
   * `storage`: `storage` failed to load, or stopped writing (records stay in memory only, so a restart loses them; `records` is empty).
   */
  kind: "rejected" | "dropped" | "storage";
  /** HTTP status of the last answer, when there was one. */
  status: number | undefined;
  message: string;
  records: Array<{ id: string; reason?: string }>;
}

export interface EventClientStats {
  /** Records waiting in the buffer (not yet in a request). */
  buffered: number;
  bufferedBytes: number;
  /** Records the gateway accepted. */
  accepted: number;
  /** Records the gateway refused (4xx other than 408, 409 and 429, or per-record errors). */
  rejected: number;
  /**
   * Records lost on the client: buffer full (the newest are dropped), attempts
   * exhausted, close timed out, or a page closed with records it could not
   * send (without `storage`).
   */
  dropped: number;
  /** Requests repeated after a 408, 409, 429, 5xx or network error. */
  retries: number;
}

interface Pending {
  id: string;
  line: string;
  bytes: number;
  /** Order of enqueueing, for flush(). */
  seq: number;
  /** The Idempotency-Key of the batch it was last taken into (stored with it): a restart resends that batch whole. */
  key?: string;
  /** Attempts spent on it by earlier batches that left it unwritten (`record_unavailable`). */
  attempts?: number;
}

interface Batch {
  records: Pending[];
  /** NDJSON, one record a line. */
  body: string;
  bytes: number;
  /**
   * The batch's `Idempotency-Key` (an sf-string), sent with every attempt of
   * these bytes and stored with its records, so that a retry, or the same
   * batch after a restart, of a request the gateway wrote but whose answer was
   * lost gets the first answer again, and nothing is written twice. Records
   * put back in the buffer go out in a new batch, with a key of its own.
   */
  key: string;
}

type Outcome =
  | { done: true }
  | {
      done: false;
      status: number | undefined;
      message: string;
      retryAfterMs?: number;
      /** No HTTP answer at all (network error, abort). */
      unreachable?: boolean;
      /** 413, or 429 batch_over_budget, on more than one record: the records go again in smaller batches. */
      split?: boolean;
      /**
       * A 202 whose `errors` name records the gateway did not write but may
       * later (`record_unavailable`: Kafka refused the topic meanwhile): the
       * others were written; these go again, after `retryAfterMs`, in a batch
       * (and with a key) of their own.
       */
      unwritten?: Pending[];
    };

/** Per-record codes of a 202 for records not written that a later request may write. */
const UNWRITTEN_CODES: ReadonlySet<string> = new Set(["record_unavailable"]);

/** Browsers refuse `keepalive` requests once their bodies in flight pass 64 KiB (per page). */
export const KEEPALIVE_BODY_LIMIT = 65_536;

/** A token that expires within this is replaced ahead of time, so a page that is hidden has a valid one at hand. */
const TOKEN_AHEAD_MS = 60_000;

const DEFAULT_RETRY: RetryOptions = {
  initialDelayMs: 500,
  maxDelayMs: 30_000,
  maxAttempts: 10,
  maxRetryAfterMs: 300_000,
};

/** 409: a request with the same Idempotency-Key, or a record with the same id, is being written: ask again. */
function retryable(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

/** How a batch of records (each one JSON text) becomes a request body. */
export interface BatchEncoding {
  contentType: string;
  open: string;
  /** One byte: the batch size arithmetic counts it as one. */
  separator: string;
  close: string;
}

const NDJSON: BatchEncoding = { contentType: "application/x-ndjson", open: "", separator: "\n", close: "" };

/** `promise`, or a rejection once `signal` aborts (for a fetch that does not honour its signal). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(new Error("aborted"));
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** `parent`, also aborted `ms` after the call: one attempt's deadline. `clear` must be called once it is settled. */
function withDeadline(parent: AbortSignal, ms: number): { signal: AbortSignal; clear: () => void } {
  const controller = new AbortController();
  const timeUp = () => controller.abort(new Error(`no answer within ${ms} ms`));
  const parentAborted = () => controller.abort(parent.reason);
  const timer = setTimeout(timeUp, ms);
  if (parent.aborted) parentAborted();
  else parent.addEventListener("abort", parentAborted, { once: true });
  return {
    signal: controller.signal,
    clear: () => {
      clearTimeout(timer);
      parent.removeEventListener("abort", parentAborted);
    },
  };
}

/** The parts of a page the online check uses, looked up at run time so the same build runs on servers. */
interface OnlineAware {
  navigator?: { onLine?: boolean };
  addEventListener?(type: string, listener: () => void): void;
  removeEventListener?(type: string, listener: () => void): void;
}

/** A page that says it is offline (and will say when it is back): a request now would only burn an attempt. */
function isOffline(): boolean {
  const page = globalThis as unknown as OnlineAware;
  return page.navigator?.onLine === false && typeof page.addEventListener === "function";
}

/** Waits out a backoff delay, ended early when `signal` aborts or a page comes back online (a retry is worth it now). */
function backoffWait(ms: number, signal: AbortSignal): Promise<void> {
  const page = globalThis as unknown as OnlineAware;
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      page.removeEventListener?.("online", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
    page.addEventListener?.("online", done);
    if (signal.aborted) done();
  });
}

/** Resolves at once when online, else on the page's `online` event or when `signal` aborts. */
function untilOnline(signal: AbortSignal): Promise<void> {
  // The longest delay a timer takes (about 24 days): in effect, until one of those.
  return isOffline() && !signal.aborted ? backoffWait(2 ** 31 - 1, signal) : Promise.resolve();
}

/**
 * Sends records to `POST /v1/events` in batches (by count, bytes and time),
 * gzipped where the platform can, one request at a time so records keep
 * their order. Failed requests are retried with jittered exponential backoff
 * (after `Retry-After` when the gateway sends one, up to `maxRetryAfterMs`);
 * a 401 gets one fresh token and the same bytes again; every attempt of a
 * batch carries the same `Idempotency-Key`, so the gateway writes a retried
 * batch once; every record carries an id that stays the same across retries
 * and restarts. Memory is bounded:
 * past `maxBufferRecords` or `maxBufferBytes` new records are dropped and
 * counted. `EventClient` and `CloudEventClient` are its two faces: what a
 * record is, and how a batch is framed.
 */
export abstract class BatchingClient {
  readonly #endpoint: string;
  readonly #fetch: FetchLike;
  readonly #retry: RetryOptions;
  readonly #limits: {
    maxBatchRecords: number;
    maxBatchBytes: number;
    flushIntervalMs: number;
    maxBufferRecords: number;
    maxBufferBytes: number;
    gzipMinBytes: number;
    requestTimeoutMs: number;
  };
  /**
   * What the gateway takes in one request, learned from its 413s (its
   * `MAX_BODY_BYTES` or `MAX_RECORDS_PER_REQUEST` may be below this client's
   * batch limits): batches stay under it from then on.
   */
  readonly #accepts = { records: Infinity, bytes: Infinity };
  readonly #gzip: boolean;
  readonly #buffer: Pending[] = [];
  #bufferBytes = 0;
  readonly #inFlight = new Set<Batch>();
  #sending = false;
  /** A batch smaller than the limits may go: the timer fired, or flush() or close() asked. */
  #partialDue = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #nextSeq = 1;
  /** Records restored from storage get sequence numbers below every enqueued one: they are older. */
  #lowestSeq = 1;
  /**
   * flush() promises by the last sequence number they wait for: calls with the same target share
   * one, so however often flush() is called during an outage, there are at most as many as records held.
   */
  readonly #flushWaiters = new Map<number, [Promise<void>, () => void]>();
  readonly #counts = { accepted: 0, rejected: 0, dropped: 0, retries: 0 };
  /** Body bytes of keepalive requests in flight, held under KEEPALIVE_BODY_LIMIT. */
  #keepaliveBytes = 0;
  /** The last token a callback returned, for the synchronous send on page hide. */
  #lastToken: string | undefined;
  /** A token being resolved ahead of need, and when to look at it again. */
  #tokenAhead: Promise<void> | undefined;
  #nextTokenCheck = 0;
  /** Whether the last request got an HTTP answer: then a keepalive request on page hide will most likely arrive. */
  #reachable = false;
  readonly #storage: QueueStorage | undefined;
  /** Records an earlier run stored are being loaded: nothing is sent until they are back at the front. */
  #restoring: Promise<void> | undefined;
  readonly #abort = new AbortController();
  readonly #stopPageHide: (() => void) | undefined;
  #closing: Promise<void> | undefined;

  readonly #options: EventClientOptions;
  readonly #encoding: BatchEncoding;

  constructor(options: EventClientOptions, encoding: BatchEncoding) {
    this.#options = options;
    this.#encoding = encoding;
    this.#endpoint = `${options.url.replace(/\/+$/, "")}/v1/events`;
    this.#fetch = options.fetch ?? ((url, init) => globalThis.fetch(url, init));
    this.#retry = { ...DEFAULT_RETRY, ...options.retry };
    this.#limits = {
      maxBatchRecords: options.maxBatchRecords ?? 500,
      maxBatchBytes: options.maxBatchBytes ?? 512 * 1024,
      flushIntervalMs: options.flushIntervalMs ?? 1000,
      maxBufferRecords: options.maxBufferRecords ?? 10_000,
      maxBufferBytes: options.maxBufferBytes ?? 5 * 1024 * 1024,
      gzipMinBytes: options.gzipMinBytes ?? 1024,
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
    };
    this.#gzip = (options.gzip ?? true) && typeof CompressionStream === "function";
    this.#storage = options.storage;
    if (this.#storage) this.#restoring = this.#restore(this.#storage);
    this.#stopPageHide =
      options.flushOnPageHide === false ? undefined : onPageHide((final) => this.#sendOnPageHide(final));
    this.#prepareToken();
  }

  /** Buffers one record, already JSON, under its id; see `enqueue` of the subclasses. */
  protected add(id: string, line: string): string | undefined {
    if (this.#closing) throw new Error("the client is closed");
    const bytes = utf8Length(line);
    if (bytes + this.#encoding.open.length + this.#encoding.close.length > this.#limits.maxBatchBytes) {
      throw new RangeError(`a record of ${bytes} bytes is larger than maxBatchBytes`);
    }
    if (
      this.#buffer.length >= this.#limits.maxBufferRecords ||
      this.#bufferBytes + bytes > this.#limits.maxBufferBytes
    ) {
      this.#counts.dropped++;
      return undefined;
    }
    this.#buffer.push({ id, line, bytes, seq: this.#nextSeq++ });
    this.#bufferBytes += bytes;
    this.#storage?.add([{ id, line }]);
    this.#prepareToken();
    this.#maybeSend();
    return id;
  }

  /**
   * Sends everything buffered; resolves once every record enqueued before the
   * call (and every record restored from storage) is accepted, refused or dropped.
   */
  flush(): Promise<void> {
    const upTo = this.#nextSeq - 1;
    if (this.#restoring) return this.#restoring.then(() => this.#flushUpTo(upTo));
    return this.#flushUpTo(upTo);
  }

  /**
   * Stops taking records, flushes, and stops listening to the page. After
   * `timeoutMs` (default 10 s) whatever is still unsent is dropped and counted
   * (with `storage`, it stays stored and goes on the next start instead).
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.#closing ??= this.#shutDown(options.timeoutMs ?? 10_000);
    return this.#closing;
  }

  get stats(): EventClientStats {
    return { buffered: this.#buffer.length, bufferedBytes: this.#bufferBytes, ...this.#counts };
  }

  #flushUpTo(upTo: number): Promise<void> {
    this.#partialDue = true;
    this.#maybeSend();
    if (this.#oldestUnsettled() > upTo) return Promise.resolve();
    let waiter = this.#flushWaiters.get(upTo);
    if (!waiter) {
      let resolve = () => {};
      waiter = [new Promise<void>((done) => (resolve = done)), () => resolve()];
      this.#flushWaiters.set(upTo, waiter);
    }
    return waiter[0];
  }

  async #shutDown(timeoutMs: number): Promise<void> {
    this.#stopPageHide?.();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const flushed = this.flush();
    const timedOut = await Promise.race([
      flushed.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    this.#clearTimer();
    if (timedOut) {
      // Aborting ends every request and backoff wait at once; their batches are given up on.
      this.#abort.abort();
      const left = this.#buffer.splice(0);
      this.#bufferBytes = 0;
      this.#giveUp(left, undefined, "the client closed before these records were sent");
      this.#settle(undefined);
      await flushed;
    }
    await this.#storage?.flush();
    await this.#storage?.close?.();
  }

  /** Puts the records an earlier run left in storage in front of the buffer, oldest first. */
  async #restore(storage: QueueStorage): Promise<void> {
    // Unreadable storage, or storage that stops writing later: records go from memory only. Said once.
    const report = (error: unknown) =>
      this.#options.onError?.({ kind: "storage", status: undefined, message: messageOf(error), records: [] });
    // Asked for at once (before any add), inside a promise: a load that throws at once is reported as one that rejects.
    const stored = await new Promise<StoredRecord[]>((resolve) => resolve(storage.load(report))).catch(
      (error): StoredRecord[] => {
        report(error);
        return [];
      },
    );
    const present = new Set(this.#buffer.map((record) => record.id));
    const restored: Pending[] = [];
    const refused: Pending[] = [];
    let bytes = 0;
    for (const { id, line, key } of stored) {
      if (present.has(id)) continue;
      const record: Pending = { id, line, bytes: utf8Length(line), seq: 0, key };
      const fits =
        record.bytes <= this.#limits.maxBatchBytes &&
        this.#buffer.length + restored.length < this.#limits.maxBufferRecords &&
        this.#bufferBytes + bytes + record.bytes <= this.#limits.maxBufferBytes;
      if (!fits) {
        refused.push(record);
        continue;
      }
      restored.push(record);
      bytes += record.bytes;
    }
    this.#lowestSeq -= restored.length;
    restored.forEach((record, index) => {
      record.seq = this.#lowestSeq + index;
    });
    this.#buffer.unshift(...restored);
    this.#bufferBytes += bytes;
    this.#drop(refused, undefined, "stored records past this client's limits");
    this.#restoring = undefined;
    this.#maybeSend();
  }

  #maybeSend(): void {
    if (this.#sending || this.#restoring || this.#buffer.length === 0 || this.#abort.signal.aborted) return;
    if (this.#partialDue || this.#fullBatchReady()) {
      this.#clearTimer();
      void this.#sendLoop();
      return;
    }
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.#partialDue = true;
      this.#maybeSend();
    }, this.#limits.flushIntervalMs);
  }

  #fullBatchReady(): boolean {
    return (
      this.#buffer.length >= this.#batchRecords() ||
      this.#bufferBytes + this.#buffer.length > this.#batchBytes()
    );
  }

  #batchRecords(): number {
    return Math.min(this.#limits.maxBatchRecords, this.#accepts.records);
  }

  #batchBytes(): number {
    return Math.min(this.#limits.maxBatchBytes, this.#accepts.bytes);
  }

  async #sendLoop(): Promise<void> {
    this.#sending = true;
    try {
      while (this.#buffer.length > 0 && (this.#partialDue || this.#fullBatchReady())) {
        if (this.#abort.signal.aborted) return;
        const batch = this.#takeBatch(this.#batchBytes(), true);
        if (batch) await this.#deliver(batch);
      }
      this.#partialDue = false;
    } finally {
      this.#sending = false;
    }
    this.#maybeSend();
  }

  /**
   * The oldest buffered records that fit in `maxBytes` (and the count limit);
   * undefined if not even one fits, unless `atLeastOne`: then a record larger
   * than what the gateway was learned to take goes alone, and the gateway decides.
   */
  #takeBatch(maxBytes: number, atLeastOne = false): Batch | undefined {
    let count = 0;
    let bytes = this.#encoding.open.length + this.#encoding.close.length;
    // Records an earlier run sent under a stored key go again as that batch, whole and alone
    // (the same body under the same key): the gateway answers it again if it wrote it.
    const key = this.#buffer[0]?.key;
    while (count < this.#buffer.length) {
      const record = this.#buffer[count] as Pending;
      const next = record.bytes + (count > 0 ? 1 : 0);
      if (record.key !== key) break;
      if (
        !key &&
        (count >= this.#batchRecords() || (bytes + next > maxBytes && !(atLeastOne && count === 0)))
      )
        break;
      bytes += next;
      count++;
    }
    if (count === 0) return undefined;
    const records = this.#buffer.splice(0, count);
    for (const record of records) this.#bufferBytes -= record.bytes;
    const { open, separator, close } = this.#encoding;
    const body = open + records.map((record) => record.line).join(separator) + close;
    const batch: Batch = { records, body, bytes, key: key ?? this.#newKey(records) };
    this.#inFlight.add(batch);
    return batch;
  }

  /** A fresh Idempotency-Key for these records, stored with them (#deliver waits for the write before sending). */
  #newKey(records: Pending[]): string {
    const key = `"${uuidv7()}"`;
    for (const record of records) record.key = key;
    this.#storage?.add(records.map(({ id, line }) => ({ id, line, key })));
    return key;
  }

  /**
   * In a page, resolves a token ahead of need (at start, and whenever the one
   * at hand expires within a minute), so the synchronous send on page hide has one.
   */
  #prepareToken(): void {
    const source = this.#options.token;
    if (!this.#stopPageHide || typeof source === "string") return;
    if (this.#tokenAhead || Date.now() < this.#nextTokenCheck) return;
    const current = this.#lastToken;
    if (current !== undefined) {
      const expiresAt = tokenExpiresAt(current);
      if (expiresAt === undefined || expiresAt - Date.now() > TOKEN_AHEAD_MS) return;
    }
    this.#tokenAhead = resolveToken(source, current !== undefined)
      .then(
        (token) => {
          this.#lastToken = token;
        },
        () => {
          // The next request calls the callback again, and reports if it still fails.
        },
      )
      .finally(() => {
        this.#tokenAhead = undefined;
        // A callback that failed, or handed back a token that still expires soon, is not asked again at once.
        this.#nextTokenCheck = Date.now() + 5000;
      });
  }

  /** Sends one batch until it is accepted, refused, or given up on. Never rejects. */
  async #deliver(batch: Batch): Promise<void> {
    const payload = await this.#encode(batch);
    const canRefresh = typeof this.#options.token === "function";
    /**
     * The token a 401 refused, while this attempt asks for a fresh one: another 401 now is a
     * refusal, and the same token again means the callback has nothing newer yet.
     */
    let refused: string | undefined;
    let attempt = 1;
    /** Token callbacks failed in a row: their own backoff, as they spend no attempt. */
    let tokenFailures = 0;
    for (;;) {
      await untilOnline(this.#abort.signal);
      // The key is stored before the request goes: a client killed mid-request resends it under that key.
      await this.#storage?.flush();
      let outcome: Outcome;
      let deadline: ReturnType<typeof withDeadline> | undefined;
      let stale = false;
      /** The token callback failed or did not answer in time: nothing was sent. */
      let noToken = false;
      try {
        // Within the request timeout and close(): a callback that never answered stalled the batch, and close().
        const asked = withDeadline(this.#abort.signal, this.#limits.requestTimeoutMs);
        const token = await untilAborted(
          resolveToken(this.#options.token, refused !== undefined),
          asked.signal,
        ).finally(() => {
          asked.clear();
          noToken = true;
        });
        noToken = false;
        tokenFailures = 0;
        this.#lastToken = token;
        stale = token === refused;
        if (stale) {
          // The callback has nothing newer yet (a token file its sidecar rotates late): the same token
          // would be refused again, so this is no refusal of a fresh one; the batch waits and asks again.
          outcome = { done: false, status: 401, message: "no fresh token" };
        } else {
          // Measured from the request, through its answer's body: a peer that stops answering stalls nothing.
          deadline = withDeadline(this.#abort.signal, this.#limits.requestTimeoutMs);
          const response = await untilAborted(
            this.#post(payload.body, payload.size, payload.gzip, token, batch.key, deadline.signal),
            deadline.signal,
          );
          this.#reachable = true;
          if (response.status === 401 && canRefresh && refused === undefined) {
            // The token expired between enqueue and send, or was revoked: one fresh token, the same bytes.
            await response.text().catch(() => "");
            refused = token;
            continue;
          }
          outcome = await untilAborted(this.#interpret(batch, response), deadline.signal);
        }
      } catch (error) {
        outcome = { done: false, status: undefined, message: messageOf(error), unreachable: true };
      } finally {
        deadline?.clear();
      }
      // No token (the identity provider down): nothing was sent, so no attempt is spent either; the
      // batch waits on a backoff of its own. Counted, ten of them dropped the batch within a minute.
      if (noToken && !this.#abort.signal.aborted) {
        this.#counts.retries++;
        await backoffWait(backoffDelay(tokenFailures++, this.#retry), this.#abort.signal);
        continue;
      }
      // Any answer but a 401 (or none): a later 401 (a short-lived token that expired while the batch
      // waited out an outage) gets a fresh token again. Only a second 401 in a row is a refusal. While
      // the callback hands back the refused token, it is asked for a fresh one again, not sent.
      if (!stale) refused = undefined;
      if (outcome.done) break;
      if (outcome.unwritten) {
        // The batch's attempts count for each record it left unwritten: records of a topic refused for
        // good, sent again with others that are written, went again under fresh attempts forever.
        const again = outcome.unwritten.filter((record) => {
          record.attempts = (record.attempts ?? 0) + attempt;
          return record.attempts < this.#retry.maxAttempts;
        });
        // The others were written, or are given up on now: they leave storage.
        this.#storage?.remove(batch.records.filter((record) => !again.includes(record)).map(({ id }) => id));
        this.#drop(
          outcome.unwritten.filter((record) => !again.includes(record)),
          outcome.status,
          `gave up after ${this.#retry.maxAttempts} attempts: ${outcome.message}`,
        );
        // None left to send again (all given up on): no wait, no retry.
        if (again[0]) {
          await backoffWait(
            Math.min(outcome.retryAfterMs ?? this.#retry.initialDelayMs, this.#retry.maxRetryAfterMs),
            this.#abort.signal,
          );
          this.#counts.retries++;
        }
        batch.records = again;
        this.#requeue(batch, false);
        this.#partialDue = true;
        return;
      }
      if (outcome.split) {
        // Nothing of it was written (a 413 is answered before the body is read, a batch over the
        // budget is refused whole): the records go again, first in the buffer, in batches under
        // what the gateway takes.
        this.#requeue(batch, false);
        this.#partialDue = true;
        return;
      }
      if (outcome.unreachable) this.#reachable = false;
      if (this.#abort.signal.aborted) {
        this.#giveUp(batch.records, outcome.status, `the client closed: ${outcome.message}`);
        this.#settle(batch);
        return;
      }
      // Offline: the attempt is not counted; the next one waits for the page's `online` event.
      if (outcome.unreachable && isOffline()) continue;
      // 409: the gateway is still writing this batch (its Idempotency-Key, say after a 503 at the ack
      // deadline or a crash) or a record of it (its id). Nothing failed yet, so no attempt is spent:
      // given up on, the batch would be reported dropped though it may still be written (or lost, if
      // never written). The gateway's claim ends within IDEMPOTENCY_PENDING_SEC, then the answer changes.
      const pending = outcome.status === 409;
      if (!pending && attempt >= this.#retry.maxAttempts) {
        this.#drop(batch.records, outcome.status, `gave up after ${attempt} attempts: ${outcome.message}`);
        break;
      }
      this.#counts.retries++;
      // `Retry-After` is the least the gateway asks, not the whole wait: a gateway that says 1 s at each
      // answer (its identity provider or Kafka out of reach for a while) spent every attempt in 11 s.
      const backoff = backoffDelay(attempt - 1, this.#retry);
      const delay =
        outcome.retryAfterMs === undefined
          ? backoff
          : Math.max(
              backoff,
              Math.min(outcome.retryAfterMs, this.#retry.maxRetryAfterMs) +
                Math.floor(Math.random() * this.#retry.initialDelayMs),
            );
      if (!pending) attempt++;
      await backoffWait(delay, this.#abort.signal);
    }
    this.#storage?.remove(batch.records.map((record) => record.id));
    this.#settle(batch);
  }

  /** Gzipped once per batch, so every retry sends the same bytes. */
  async #encode(batch: Batch): Promise<{ body: string | Uint8Array; size: number; gzip: boolean }> {
    if (this.#gzip && batch.bytes >= this.#limits.gzipMinBytes) {
      try {
        const stream = new Blob([batch.body]).stream().pipeThrough(new CompressionStream("gzip"));
        const body = new Uint8Array(await new Response(stream).arrayBuffer());
        return { body, size: body.byteLength, gzip: true };
      } catch {
        // A platform whose CompressionStream fails gets the plain body.
      }
    }
    return { body: batch.body, size: batch.bytes, gzip: false };
  }

  /**
   * Calls fetch synchronously (the page-hide path depends on it). In a page,
   * a request is sent with `keepalive` whenever it fits in the browser's
   * budget, so it survives the page being closed mid-request.
   */
  #post(
    body: string | Uint8Array,
    size: number,
    gzip: boolean,
    token: string,
    idempotencyKey: string,
    signal: AbortSignal,
  ): Promise<Response> {
    const keepalive = this.#stopPageHide !== undefined && size <= KEEPALIVE_BODY_LIMIT - this.#keepaliveBytes;
    const headers: Record<string, string> = {
      authorization: `Bearer ${token}`,
      "content-type": this.#encoding.contentType,
      "idempotency-key": idempotencyKey,
    };
    if (gzip) headers["content-encoding"] = "gzip";
    const init: RequestInit = {
      method: "POST",
      headers,
      body: body as RequestInit["body"],
      signal,
    };
    if (!keepalive) return this.#fetch(this.#endpoint, init);
    this.#keepaliveBytes += size;
    const sent = this.#fetch(this.#endpoint, { ...init, keepalive: true });
    const release = () => {
      this.#keepaliveBytes -= size;
    };
    sent.then(release, release);
    return sent;
  }

  async #interpret(batch: Batch, response: Response): Promise<Outcome> {
    const text = await response.text().catch(() => "");
    let answer: { accepted?: unknown; errors?: unknown; message?: unknown; error?: unknown } = {};
    try {
      answer = JSON.parse(text) as typeof answer;
    } catch {
      // A body that is not JSON (a proxy's error page) carries no code or per-record detail.
    }
    // A 429 for more events than the tenant's whole budget per second: waiting never makes it fit, halves do.
    const overBudget = answer.error === "batch_over_budget";
    if ((response.status === 413 || overBudget) && batch.records.length > 1) {
      this.#accepts.records = Math.min(this.#accepts.records, Math.ceil(batch.records.length / 2));
      if (!overBudget) this.#accepts.bytes = Math.min(this.#accepts.bytes, Math.ceil(batch.bytes / 2));
      return { done: false, status: response.status, message: `HTTP ${response.status}`, split: true };
    }
    if (answer.error === "idempotency_key_reused") {
      // A stored batch whose bytes differ from the first time (gzip of another runtime): sent again under a
      // new key; if the first one was written, its records may be written twice, but none is lost.
      batch.key = this.#newKey(batch.records);
      return { done: false, status: response.status, message: "idempotency_key_reused" };
    }
    if (retryable(response.status)) {
      const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"));
      return { done: false, status: response.status, message: `HTTP ${response.status}`, retryAfterMs };
    }
    const reasons = new Map<number, string>();
    const unwritten = new Set<number>();
    if (Array.isArray(answer.errors)) {
      for (const error of answer.errors as Array<{ index?: unknown; reason?: unknown; code?: unknown }>) {
        if (typeof error.index !== "number") continue;
        if (response.ok && UNWRITTEN_CODES.has(String(error.code))) unwritten.add(error.index);
        else reasons.set(error.index, String(error.reason));
      }
    }
    if (response.ok) {
      const refused = batch.records.filter((_, index) => reasons.has(index));
      this.#counts.accepted += batch.records.length - refused.length - unwritten.size;
      if (refused.length > 0) this.#reject(batch, response.status, "some records were rejected", reasons);
      if (unwritten.size > 0)
        return {
          done: false,
          status: response.status,
          message: "some records were not written yet",
          retryAfterMs: parseRetryAfter(response.headers.get("retry-after")),
          unwritten: batch.records.filter((_, index) => unwritten.has(index)),
        };
    } else {
      const message = typeof answer.message === "string" ? answer.message : `HTTP ${response.status}`;
      this.#reject(batch, response.status, message, reasons, true);
    }
    return { done: true };
  }

  #reject(batch: Batch, status: number, message: string, reasons: Map<number, string>, all = false): void {
    const records: DeliveryFailure["records"] = [];
    batch.records.forEach((record, index) => {
      const reason = reasons.get(index);
      if (reason !== undefined) records.push({ id: record.id, reason });
      else if (all) records.push({ id: record.id });
    });
    this.#counts.rejected += records.length;
    this.#options.onError?.({ kind: "rejected", status, message, records });
  }

  /** Counts and reports records given up on (none: nothing to say). */
  #drop(records: Pending[], status: number | undefined, message: string): void {
    if (records.length === 0) return;
    this.#counts.dropped += records.length;
    this.#storage?.remove(records.map((record) => record.id));
    this.#options.onError?.({ kind: "dropped", status, message, records: records.map(({ id }) => ({ id })) });
  }

  /** Records the client stops trying to send: with storage they stay stored for the next start, else they are dropped. */
  #giveUp(records: Pending[], status: number | undefined, message: string): void {
    if (!this.#storage) this.#drop(records, status, message);
  }

  /**
   * The page is being hidden or closed: send what fits in the keepalive budget
   * now, uncompressed (compression is asynchronous and might not finish), with
   * the token resolved ahead of time. What does not fit stays buffered and
   * goes out if the page comes back; when the page is going away for good
   * (`final`), what is left is counted as dropped, unless it is in storage.
   */
  #sendOnPageHide(final: boolean): void {
    if (this.#abort.signal.aborted) return;
    const token = typeof this.#options.token === "string" ? this.#options.token : this.#lastToken;
    // A token that expired while the page sat idle would get a 401 nobody is left to see, after the
    // records left storage: stored, they wait for the next start instead.
    const expired = token !== undefined && (tokenExpiresAt(token) ?? Number.POSITIVE_INFINITY) <= Date.now();
    if (token !== undefined && !(expired && this.#storage) && !isOffline() && !this.#restoring) {
      this.#clearTimer();
      for (;;) {
        const batch = this.#takeBatch(
          Math.min(this.#batchBytes(), KEEPALIVE_BODY_LIMIT - this.#keepaliveBytes),
        );
        if (!batch) break;
        const ids = batch.records.map((record) => record.id);
        // A keepalive request outlives the page: once the gateway is known to answer, its records
        // leave storage now (else a reload would send them twice). Without that, they stay stored.
        const unstored = this.#storage !== undefined && this.#reachable;
        if (unstored) this.#storage?.remove(ids);
        // No deadline: a keepalive request is meant to outlive the page, and nothing waits on it.
        untilAborted(
          this.#post(batch.body, batch.bytes, false, token, batch.key, this.#abort.signal),
          this.#abort.signal,
        )
          .then((response): Outcome | Promise<Outcome> => {
            if (response.status !== 401) return this.#interpret(batch, response);
            // No fresh token can be awaited here: the batch goes again with one.
            this.#lastToken = undefined;
            return { done: false, status: 401, message: "HTTP 401" };
          })
          .catch((error): Outcome => ({ done: false, status: undefined, message: messageOf(error) }))
          .then((outcome) => {
            if (outcome.done) {
              this.#storage?.remove(ids);
              this.#settle(batch);
            } else this.#requeue(batch, unstored);
          });
      }
    }
    if (final && !this.#storage) {
      // Nothing will send these once the page is gone: count them rather than lose them silently.
      const left = this.#buffer.splice(0);
      this.#bufferBytes = 0;
      this.#drop(
        left,
        undefined,
        token === undefined
          ? "the page closed before a token was at hand"
          : "the page closed with more than the browser lets it send",
      );
      this.#settle(undefined);
    }
  }

  /** A page-hide batch that failed goes back to the front of the buffer (and to storage), in its order. */
  #requeue(batch: Batch, unstored: boolean): void {
    if (unstored) this.#storage?.add(batch.records.map(({ id, line }) => ({ id, line })));
    if (this.#abort.signal.aborted) {
      this.#giveUp(batch.records, undefined, "the client closed before these records were sent");
      this.#settle(batch);
      return;
    }
    this.#buffer.unshift(...batch.records);
    for (const record of batch.records) {
      this.#bufferBytes += record.bytes;
      // They go again in new batches (halves, or with what is buffered), each under a key of its own.
      record.key = undefined;
    }
    // Settled once back in the buffer: a flush waits for them there (none are left when all were dropped).
    this.#settle(batch);
    this.#maybeSend();
  }

  #oldestUnsettled(): number {
    let oldest = this.#buffer[0]?.seq ?? Infinity;
    for (const batch of this.#inFlight) oldest = Math.min(oldest, (batch.records[0] as Pending).seq);
    return oldest;
  }

  #settle(batch: Batch | undefined): void {
    if (batch) this.#inFlight.delete(batch);
    const oldest = this.#oldestUnsettled();
    for (const [upTo, [, resolve]] of this.#flushWaiters) {
      if (upTo >= oldest) continue;
      this.#flushWaiters.delete(upTo);
      resolve();
    }
  }

  #clearTimer(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/**
 * Sends events to `POST /v1/events` as NDJSON batches: see `BatchingClient`
 * for batching, retries, ids and bounds.
 */
export class EventClient<Events extends EventTypes = UntypedEvents> extends BatchingClient {
  constructor(options: EventClientOptions) {
    super(options, NDJSON);
  }

  /**
   * Buffers one record and returns its id, or undefined when the buffer is
   * full (the record is dropped and counted: the records already buffered
   * keep their place). Throws on a record that can never be sent.
   */
  enqueue(record: EventRecord<Events>): string | undefined {
    if (typeof record?.type !== "string" || record.type === "") throw new TypeError("a record needs a type");
    const data: unknown = record.data;
    if (data === null || typeof data !== "object" || Array.isArray(data)) {
      throw new TypeError("a record needs a data object");
    }
    const id = record.id ?? uuidv7();
    const { type, ts, channel, key } = record;
    return this.add(id, JSON.stringify({ id, type, ts, channel, key, data }));
  }
}
