import {
  createLocalJWKSet,
  type FlattenedJWSInput,
  type JSONWebKeySet,
  type JWK,
  type JWSHeaderParameters,
} from "jose";
import { GatewayError } from "../../domain/errors.ts";
import { readCapped } from "../../lib/read-capped.ts";
import { sleep } from "../../lib/time.ts";

export interface JwksOptions {
  url: string;
  /** Least time between two fetches of the document, whoever asks (new kids, stale set, retries). */
  minRefetchIntervalMs: number;
  /** A key set older than this is re-read in the background while it keeps serving. */
  maxAgeMs: number;
  /** One fetch, from connect to the last byte. */
  timeoutMs: number;
  /** A fetch failed: `reason` is a fixed phrase, for the log. */
  onFetchFailure?(reason: string): void;
  /** A fetched set was taken but holds keys that cannot be imported: their kids (a few, cut short), for the log. */
  onUnusableKeys?(kids: string[]): void;
}

/** The algorithms a JWKS key may verify: the token's `alg` must be one of them. */
export const JWKS_ALGORITHMS = ["RS256", "ES256", "EdDSA", "PS256"];

type LocalKeySet = ReturnType<typeof createLocalJWKSet>;

/** A fetched document, sorted: jose's lookups over the keys that verify and over those that cannot. */
interface KeySet {
  usable: LocalKeySet;
  /** The usable keys' JWKs: the last good copy of a kid a later document breaks. */
  usableKeys: JWK[];
  /** Published keys that match one of our algorithms and fail to import (bad material, a private key). */
  unusable: LocalKeySet | undefined;
  /**
   * Kids published only by keys that can never verify a token here: not for
   * signing (an encryption key: `use` "enc", an encryption `alg` such as
   * RSA-OAEP or ECDH-ES, `key_ops` without "verify", an X25519 key) or of a
   * kind or curve none of our algorithms takes. Ignored, not broken.
   */
  ignoredKids: ReadonlySet<string>;
}

/**
 * The lookup's refusal of a token whose `kid` the set publishes only as a key
 * that cannot verify it: a 401 (the token's fault), answered at once, since
 * no fetch can change it.
 */
export class KeyNotForSigning extends Error {
  readonly code = KEY_NOT_FOR_SIGNING;
  constructor() {
    super("the JWKS publishes this kid only as a key that does not verify tokens");
    this.name = "KeyNotForSigning";
  }
}

const NO_MATCHING_KEY = "ERR_JWKS_NO_MATCHING_KEY";
/** `KeyNotForSigning`'s code. */
export const KEY_NOT_FOR_SIGNING = "ERR_JWKS_KEY_NOT_FOR_SIGNING";
const errorCode = (error: unknown) => (error as { code?: unknown }).code;

/** Far more than any identity provider's key set; a larger answer is not one. */
const MAX_DOCUMENT_BYTES = 256 * 1024;

/** Why a fetch failed, in words fit for a log line (nothing from the answer itself). */
class FetchFailure extends Error {}

function fetchFailureReason(error: unknown): string {
  if (error instanceof FetchFailure) return error.message;
  const { name, code } = error as { name?: unknown; code?: unknown };
  if (name === "TimeoutError" || name === "AbortError") return "JWKS endpoint timed out";
  if (name === "SyntaxError") return "JWKS endpoint answered something other than JSON";
  if (code === "ERR_JWKS_INVALID") return "JWKS endpoint answered something other than a key set";
  return "JWKS endpoint unreachable";
}

/** A 503 with Retry-After: the token may be fine, there is just no key to check it against yet. */
function keysUnavailable(retryInMs: number): GatewayError {
  const seconds = Math.max(1, Math.ceil(retryInMs / 1000));
  return new GatewayError("unavailable", "token signing keys unavailable", {
    "retry-after": String(seconds),
  });
}

/**
 * Whether the key verifies tokens of one of our algorithms, cannot (it is
 * meant to, but its material fails jose's import: bad numbers, a private
 * key), or is not for us at all (an encryption key by its `use`, `alg` or
 * `key_ops`, an X25519 key, a curve we do not accept): jose matches a key to
 * an algorithm by kind, curve, `alg`, `use` and `key_ops` before importing
 * it, so those never reach the import. jose's own matching and import decide,
 * through a set of this one key.
 */
async function usability(jwk: JWK): Promise<"usable" | "unusable" | "not ours"> {
  const alone = createLocalJWKSet({ keys: [jwk] });
  let usable = false;
  for (const alg of JWKS_ALGORITHMS) {
    try {
      await alone({ alg });
      usable = true;
    } catch (error) {
      if (errorCode(error) !== NO_MATCHING_KEY) return "unusable";
    }
  }
  return usable ? "usable" : "not ours";
}

/**
 * Sorts a fetched document. jose's `createLocalJWKSet` refuses one that is
 * not a key set, but imports each key only when a token asks for it, so a key
 * that cannot be imported would make every token naming it a 401. Here every
 * key is imported at once: a document without one usable key is refused as a
 * failed fetch (the last good set serves on), and in one that has some, the
 * last good copy of a kid the document breaks is kept.
 */
async function sortKeySet(document: unknown, previous: KeySet | undefined): Promise<KeySet> {
  const published = createLocalJWKSet(document as JSONWebKeySet).jwks().keys;
  const usableKeys: JWK[] = [];
  const unusableKeys: JWK[] = [];
  const ignoredKids = new Set<string>();
  for (const jwk of published) {
    const verdict = await usability(jwk);
    if (verdict === "usable") usableKeys.push(jwk);
    else if (verdict === "unusable") unusableKeys.push(jwk);
    else if (typeof jwk.kid === "string") ignoredKids.add(jwk.kid);
  }
  if (usableKeys.length === 0) throw new FetchFailure("JWKS endpoint answered a key set with no usable key");
  const usableKids = new Set(usableKeys.map((jwk) => jwk.kid));
  const brokenKids = new Set(
    unusableKeys.map((jwk) => jwk.kid).filter((kid) => kid !== undefined && !usableKids.has(kid)),
  );
  const keptCopies = previous?.usableKeys.filter((jwk) => brokenKids.has(jwk.kid)) ?? [];
  const keys = [...usableKeys, ...keptCopies];
  // A kid some key of ours also has (another kind of key under the same kid) is looked up as usual.
  for (const jwk of [...keys, ...unusableKeys]) if (jwk.kid !== undefined) ignoredKids.delete(jwk.kid);
  return {
    usable: createLocalJWKSet({ keys }),
    usableKeys: keys,
    unusable: unusableKeys.length === 0 ? undefined : createLocalJWKSet({ keys: unusableKeys }),
    ignoredKids,
  };
}

/** Whether the set publishes a key this header names that could not be imported. */
async function namesUnusableKey(
  keys: KeySet,
  header: JWSHeaderParameters,
  token: FlattenedJWSInput,
): Promise<boolean> {
  if (!keys.unusable) return false;
  try {
    await keys.unusable(header, token);
    return true;
  } catch (error) {
    return errorCode(error) !== NO_MATCHING_KEY;
  }
}

/** Whether the header's `kid` is one the set publishes only as keys that never verify a token here. */
function namesIgnoredKey(keys: KeySet, header: JWSHeaderParameters): boolean {
  return typeof header.kid === "string" && keys.ignoredKids.has(header.kid);
}

/** At most this many kids of unusable keys, each at most this long, go to the log. */
const LOGGED_KIDS = 5;
const LOGGED_KID_LENGTH = 100;

/**
 * The identity provider's key set: fetched here, searched with jose's
 * `createLocalJWKSet`. jose's remote set refetches on an unknown `kid` at
 * most every 30 s and refuses every other unknown `kid` meanwhile, so a
 * stream of tokens with random kids kept a freshly rotated key refused. Here
 * a token whose `kid` is not in the set waits for the next fetch that starts
 * after it arrived: one starts at once when the last one is at least
 * `minRefetchIntervalMs` old, otherwise as soon as it is, and every lookup
 * waiting meanwhile shares it. So the endpoint sees at most one fetch per
 * interval however many kids arrive, and a rotated key is accepted within
 * about one interval, never refused.
 *
 * When a fetch fails (unreachable, timeout, non-200, not a key set) the
 * lookups that waited for it get `unavailable` (503) and, until the interval
 * passed, so does every lookup that needs a fetch. Keys already fetched keep
 * serving through an outage: a set older than `maxAgeMs` is re-read in the
 * background and replaced only by a good answer.
 *
 * A document whose keys all fail to import (or that has none) is such a
 * failure. One with some usable keys replaces the set, but a kid it publishes
 * only as a broken key keeps its last good copy; a token naming a broken key
 * with no such copy gets `unavailable` too: the set is at fault, not the token.
 *
 * Keys that can never verify a token here (encryption keys, kinds and
 * curves of no algorithm we take) are ignored, neither usable nor broken: a
 * token naming a kid the set publishes only as such keys is refused (401)
 * at once, without a fetch, since no fetch could change the answer, and
 * so also while the endpoint fails.
 */
export class JwksKeys {
  private keys: KeySet | undefined;
  private keysFetchedAt = 0;
  private lastFetchAt = Number.NEGATIVE_INFINITY;
  private lastFetchFailed = false;
  private inFlight: Promise<void> | undefined;
  private inFlightStartedAt = 0;
  /** The fetch waiting for the interval to pass; lookups that need a newer document join it. */
  private next: Promise<void> | undefined;

  constructor(private readonly options: JwksOptions) {}

  /** jose's key lookup: the key this token's header names, fetching the document when it is not known yet. */
  readonly getKey = async (header: JWSHeaderParameters, token: FlattenedJWSInput): Promise<CryptoKey> => {
    const askedAt = Date.now();
    const keys = this.keys;
    if (keys) {
      if (askedAt - this.keysFetchedAt >= this.options.maxAgeMs) this.refreshInBackground(askedAt);
      try {
        return await keys.usable(header, token);
      } catch (error) {
        if (errorCode(error) !== NO_MATCHING_KEY) throw error;
        if (namesIgnoredKey(keys, header)) throw new KeyNotForSigning();
      }
    }
    await this.fetchStartedAfter(askedAt);
    const fresh = this.keys as KeySet;
    try {
      return await fresh.usable(header, token);
    } catch (error) {
      // Still no matching key after a fresh document: a 401, unless the set names it and cannot use it.
      if (errorCode(error) === NO_MATCHING_KEY && (await namesUnusableKey(fresh, header, token)))
        throw keysUnavailable(this.lastFetchAt + this.options.minRefetchIntervalMs - Date.now());
      if (errorCode(error) === NO_MATCHING_KEY && namesIgnoredKey(fresh, header))
        throw new KeyNotForSigning();
      throw error;
    }
  };

  /**
   * A token's signature failed against the set's key for its `kid`: the
   * identity provider may have replaced that key under the same kid. Waits
   * for the next fetch that starts after the token arrived (the same shared,
   * interval-bound fetch an unknown kid waits for, so forged signatures cost
   * the endpoint no more than random kids do) and says whether a new set
   * arrived, worth one more verification. None is fetched when the set was
   * already fetched after the token arrived: a fetch started in the token's
   * own millisecond may have read the set before the key was replaced, so it
   * does not count.
   */
  async refetchAfterBadSignature(askedAt: number): Promise<boolean> {
    const checked = this.keys;
    if (this.keysFetchedAt > askedAt) return false;
    await this.fetchStartedAfter(askedAt);
    return this.keys !== checked;
  }

  private fetchStartedAfter(askedAt: number): Promise<void> {
    const cooldown = this.lastFetchAt + this.options.minRefetchIntervalMs - Date.now();
    // A failing endpoint is not asked more often for it: answer 503 at once until the interval passed.
    if (this.lastFetchFailed && cooldown > 0 && !this.next) return Promise.reject(keysUnavailable(cooldown));
    // Started after the lookup (not in its millisecond, which may be before it): its set is new enough.
    if (this.inFlight && this.inFlightStartedAt > askedAt) return this.inFlight;
    this.next ??= this.fetchWhenAllowed();
    return this.next;
  }

  private async fetchWhenAllowed(): Promise<void> {
    // A fetch in flight may have started before the key was published: let it finish, then fetch anew.
    await this.inFlight?.catch(() => {});
    const cooldown = this.lastFetchAt + this.options.minRefetchIntervalMs - Date.now();
    if (cooldown > 0) await sleep(cooldown);
    this.next = undefined;
    return this.fetch();
  }

  private refreshInBackground(now: number): void {
    if (this.inFlight || this.next || now - this.lastFetchAt < this.options.minRefetchIntervalMs) return;
    // Failures are logged by fetch; the old keys keep serving.
    this.fetch().catch(() => {});
  }

  private fetch(): Promise<void> {
    const startedAt = Date.now();
    this.lastFetchAt = startedAt;
    this.lastFetchFailed = false;
    this.inFlightStartedAt = startedAt;
    const fetching = this.download()
      .then(
        (keys) => {
          this.keys = keys;
          this.keysFetchedAt = startedAt;
          this.reportUnusableKeys(keys);
        },
        (error) => {
          this.lastFetchFailed = true;
          this.options.onFetchFailure?.(fetchFailureReason(error));
          throw keysUnavailable(startedAt + this.options.minRefetchIntervalMs - Date.now());
        },
      )
      .finally(() => {
        if (this.inFlight === fetching) this.inFlight = undefined;
      });
    this.inFlight = fetching;
    return fetching;
  }

  private reportUnusableKeys(keys: KeySet): void {
    if (!keys.unusable || !this.options.onUnusableKeys) return;
    const kids = keys.unusable
      .jwks()
      .keys.slice(0, LOGGED_KIDS)
      .map((jwk) => String(jwk.kid ?? "(no kid)").slice(0, LOGGED_KID_LENGTH));
    this.options.onUnusableKeys(kids);
  }

  private async download(): Promise<KeySet> {
    const response = await fetch(this.options.url, {
      headers: { accept: "application/json" },
      redirect: "manual",
      signal: AbortSignal.timeout(this.options.timeoutMs),
    });
    if (response.status !== 200) {
      await response.body?.cancel();
      throw new FetchFailure(`JWKS endpoint answered ${response.status}`);
    }
    const declared = response.headers.get("content-length");
    const text =
      response.body === null
        ? ""
        : await readCapped(
            response.body,
            MAX_DOCUMENT_BYTES,
            declared === null ? undefined : Number(declared),
            () => new FetchFailure("JWKS document too large"),
          );
    return sortKeySet(JSON.parse(text), this.keys);
  }
}
