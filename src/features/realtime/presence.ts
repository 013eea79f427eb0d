import { channelTopic, requireChannel, tenantOfTopic } from "../../domain/channel.ts";
import { authorizedReader, type ReaderChecks } from "../../http/caller.ts";
import { jsonText } from "../../http/reply.ts";
import { SortedStrings } from "../../lib/sorted-strings.ts";
import type { Logger } from "../../log/logger.ts";
import { OccasionalLine } from "../../log/occasional-line.ts";
import type { PresencePage, PresenceStore } from "../../ports/presence.ts";
import type { Route } from "../../ports/route.ts";

/** Members listed in one answer; the rest are counted in `total`. */
export const MAX_LISTED_MEMBERS = 1000;
/** A channel with more subjects than this gets no join/leave events (its members are not tracked for them). */
export const MAX_TRACKED_MEMBERS = 1000;
/** Join and leave events sent per channel per check; the rest come at the next checks (nothing is lost, a flood is spread). */
export const MAX_EVENTS_PER_CHECK = 100;
/**
 * Channels one tenant's connections may watch for join and leave events on an
 * instance, and all tenants' together: each costs a comparison (with Redis, a
 * read) every second, so past them a `presence: true` is refused (the
 * subscription stands without those events). A tenant's 400,000 watched
 * channels held the event loop 460–660 ms of every second.
 */
export const MAX_WATCHED_CHANNELS_PER_TENANT = 2500;
export const MAX_WATCHED_CHANNELS = 4 * MAX_WATCHED_CHANNELS_PER_TENANT;
/** At most one "presence store unavailable" line per this long, as the other Redis-backed features. */
const STORE_FAILURE_LOG_INTERVAL_MS = 10_000;

/** Receives the join and leave frames of a channel (`channelKey`), to send to its presence watchers. */
export interface PresenceListener {
  presenceEvent(channelKey: string, kind: "join" | "leave", frame: string): void;
}

const LONE_SURROGATE = /\p{Cs}/u;

/** The engine topic of a channel's join and leave events (`p/<tenant>/<channel>` beside the channel's `t/…`). */
export const presenceTopic = (channelKey: string) => `p${channelKey.slice(1)}`;

/**
 * Who is watching each channel. This instance's members are counted here as
 * connections subscribe and leave (bounded by the subscriptions themselves);
 * with a store (Redis) they are shared, and `GET /v1/channels/{c}/presence`
 * answers for every instance, else for this one (`scope` says which).
 */
export class Presence {
  /**
   * Channel key → subject → connections of this instance subscribed, and the
   * subjects in order: an answer lists the first MAX_LISTED_MEMBERS at a cost
   * bounded by that, not by the channel (no sort of its 100,000 per request).
   */
  private readonly local = new Map<string, { connections: Map<string, number>; order: SortedStrings }>();
  /**
   * Channels with a local connection asking for join/leave events → how many
   * ask, and the members last told to them (unset until the baseline, who was
   * there when the first watcher came, is read: never a wave of joins).
   * Bounded by the subscriptions.
   */
  private readonly watched = new Map<string, { watchers: number; told: Set<string> | undefined }>();
  /** Tenant → how many of `watched` are its channels (at most MAX_WATCHED_CHANNELS_PER_TENANT). */
  private readonly watchedByTenant = new Map<string, number>();
  private readonly listeners: PresenceListener[] = [];
  private checking = false;
  private readonly storeFailureLine = new OccasionalLine(STORE_FAILURE_LOG_INTERVAL_MS);

  constructor(
    private readonly store: PresenceStore | undefined,
    private readonly log: Logger,
    private readonly onEvents: (kind: "join" | "leave", count: number) => void = () => {},
  ) {}

  /** Added once the server listens (WebSockets, event streams). */
  listen(listener: PresenceListener): void {
    this.listeners.push(listener);
  }

  /**
   * A local connection started (1) or stopped (-1) asking for the channel's
   * join and leave events. False when a start is refused: the channel is not
   * watched yet and its tenant, or the instance, watches as many as it may.
   */
  watch(channelKey: string, delta: 1 | -1): boolean {
    const entry = this.watched.get(channelKey);
    if (!entry) {
      if (delta < 0) return true;
      const tenant = tenantOfTopic(channelKey);
      const ofTenant = this.watchedByTenant.get(tenant) ?? 0;
      if (ofTenant >= MAX_WATCHED_CHANNELS_PER_TENANT || this.watched.size >= MAX_WATCHED_CHANNELS)
        return false;
      this.watchedByTenant.set(tenant, ofTenant + 1);
      const started = { watchers: 1, told: undefined as Set<string> | undefined };
      this.watched.set(channelKey, started);
      // The baseline is who is there now, so a subject arriving right after is a join, not part of it.
      const baseline = (page: PresencePage) => {
        if (this.watched.get(channelKey) === started && !started.told)
          started.told = page.total > MAX_TRACKED_MEMBERS ? undefined : new Set(page.members.keys());
      };
      const local = () => baseline(this.localPage(channelKey, MAX_TRACKED_MEMBERS, true));
      // Unread from the store (Redis not connected yet, or slow): this instance's members, known exactly;
      // the others' then count as joins at the first check that reads them (a join too many, never one missed).
      if (this.store) this.store.members(channelKey, MAX_TRACKED_MEMBERS, true).then(baseline, local);
      else local();
      return true;
    }
    entry.watchers += delta;
    if (entry.watchers <= 0) {
      this.watched.delete(channelKey);
      const tenant = tenantOfTopic(channelKey);
      const left = (this.watchedByTenant.get(tenant) ?? 1) - 1;
      if (left > 0) this.watchedByTenant.set(tenant, left);
      else this.watchedByTenant.delete(tenant);
    }
    return true;
  }

  /**
   * Run on a timer (never per message or per subscribe): compares each watched
   * channel's members (every instance's, from the store, else this one's) with
   * what its watchers were last told, and sends a join for each subject that
   * gained its first connection and a leave for each that lost its last one.
   * A subject that connects and leaves between two checks sends nothing; at
   * most MAX_EVENTS_PER_CHECK per channel per check. With a store, a crashed
   * instance's subjects leave once their entries expire (PRESENCE_TTL_MS). A
   * channel with more than MAX_TRACKED_MEMBERS is read as a count only: a
   * check costs the same for a channel of ten thousand as of a thousand.
   */
  async check(): Promise<void> {
    if (this.checking || this.watched.size === 0) return;
    this.checking = true;
    try {
      const keys = [...this.watched.keys()];
      const store = this.store;
      const pages = store
        ? await Promise.all(
            keys.map((key) => store.members(key, MAX_TRACKED_MEMBERS, true).catch(() => undefined)),
          )
        : keys.map((key) => this.localPage(key, MAX_TRACKED_MEMBERS, true));
      keys.forEach((key, index) => {
        const now = pages[index];
        // The store did not answer: nothing is said rather than every subject leaving.
        if (now) this.compare(key, now);
      });
    } finally {
      this.checking = false;
    }
  }

  private compare(channelKey: string, { total, members }: PresencePage): void {
    const entry = this.watched.get(channelKey);
    if (!entry) return;
    if (total > MAX_TRACKED_MEMBERS) {
      // Too crowded to follow: no events, and a fresh baseline once it is not.
      entry.told = undefined;
      return;
    }
    const told = entry.told;
    if (!told) {
      entry.told = new Set(members.keys());
      return;
    }
    let sent = 0;
    let joins = 0;
    let leaves = 0;
    for (const subject of told) {
      if (sent >= MAX_EVENTS_PER_CHECK) break;
      if (members.has(subject)) continue;
      told.delete(subject);
      this.emit(channelKey, "leave", subject);
      sent++;
      leaves++;
    }
    for (const subject of members.keys()) {
      if (sent >= MAX_EVENTS_PER_CHECK) break;
      if (told.has(subject)) continue;
      told.add(subject);
      this.emit(channelKey, "join", subject);
      sent++;
      joins++;
    }
    if (joins > 0) this.onEvents("join", joins);
    if (leaves > 0) this.onEvents("leave", leaves);
  }

  private emit(channelKey: string, kind: "join" | "leave", subject: string): void {
    const channel = channelKey.slice(channelKey.indexOf("/", 2) + 1);
    const frame = `{"type":"${kind}","channel":${JSON.stringify(channel)},"subject":${JSON.stringify(subject)}}`;
    for (const listener of this.listeners) listener.presenceEvent(channelKey, kind, frame);
  }

  /** A connection of `subject` joined (`delta` 1) or left (-1) the channel `channelKey`. */
  change(channelKey: string, sub: string, delta: 1 | -1): void {
    // A store keeps subjects as UTF-8: a lone surrogate (a JWT `sub` may hold one) would come back U+FFFD, no longer
    // this instance's member (its own instance listed it no more once written, counted it still). Named so here too.
    const subject = LONE_SURROGATE.test(sub) ? Buffer.from(sub).toString() : sub;
    let members = this.local.get(channelKey);
    if (!members) {
      if (delta < 0) return;
      members = { connections: new Map(), order: new SortedStrings() };
      this.local.set(channelKey, members);
    }
    const { connections, order } = members;
    const count = (connections.get(subject) ?? 0) + delta;
    if (count > 0) {
      if (!connections.has(subject)) order.add(subject);
      connections.set(subject, count);
    } else if (connections.delete(subject)) order.delete(subject);
    if (connections.size === 0) this.local.delete(channelKey);
    this.store?.changed(channelKey, connections);
  }

  /** Channels whose join/leave events a local connection asked for. */
  get watchedCount(): number {
    return this.watched.size;
  }

  /** Channels with a member on this instance. */
  get channelCount(): number {
    return this.local.size;
  }

  /** This instance's members of a channel as a store answers (see `PresenceStore.members`). */
  private localPage(channelKey: string, limit: number, onlyIfAll = false): PresencePage {
    const members = this.local.get(channelKey);
    const total = members?.connections.size ?? 0;
    if (!members || (onlyIfAll && total > limit)) return { total, members: new Map() };
    const { connections, order } = members;
    return {
      total,
      members: new Map(order.first(limit).map((subject) => [subject, connections.get(subject) ?? 0])),
    };
  }

  /** GET /v1/channels/{channel}/presence, after the per-IP request budget, the token and the scope `subscribe`. */
  route(checks: ReaderChecks): Route {
    return {
      method: "GET",
      path: "/v1/channels/{channel}/presence",
      handler: async (request, params) => {
        const { principal, rateLimit } = await authorizedReader(request, "subscribe", checks);
        const channel = requireChannel(principal, params.channel);
        const key = channelTopic(principal.tenant, channel);
        let scope = "instance";
        let page: PresencePage | undefined;
        if (this.store) {
          try {
            page = await this.store.members(key, MAX_LISTED_MEMBERS);
            scope = "cluster";
          } catch (error) {
            // Redis down or slow: this instance's view is still true, and the answer says it is partial.
            // Warned at most every STORE_FAILURE_LOG_INTERVAL_MS (with how many answers it stands for):
            // a line per request would flood the log for as long as Redis is down.
            const failures = this.storeFailureLine.due();
            if (failures !== undefined)
              this.log.warn(
                { err: error, failures },
                "presence store unavailable; answering for this instance",
              );
          }
        }
        const { total, members } = page ?? this.localPage(key, MAX_LISTED_MEMBERS);
        const listed = [...members].map(([subject, connections]) => ({ subject, connections }));
        return jsonText(
          200,
          JSON.stringify({ channel, scope, total, members: listed }),
          rateLimit?.own,
          rateLimit?.shared,
        );
      },
    };
  }
}
