import { channelTopic, requireChannel } from "../../domain/channel.ts";
import { type Principal, requireScope } from "../../domain/principal.ts";
import { jsonText } from "../../http/reply.ts";
import type { Logger } from "../../log/logger.ts";
import type { PresenceMembers, PresenceStore } from "../../ports/presence.ts";
import type { Route } from "../../ports/route.ts";
import type { HttpRequest } from "../../ports/transport.ts";

/** Members listed in one answer; the rest are counted in `total`. */
export const MAX_LISTED_MEMBERS = 1000;

/**
 * Who is watching each channel. This instance's members are counted here as
 * connections subscribe and leave (bounded by the subscriptions themselves);
 * with a store (Redis) they are shared, and `GET /v1/channels/{c}/presence`
 * answers for every instance, else for this one (`scope` says which).
 */
export class Presence {
  /** Channel key → subject → connections of this instance subscribed. */
  private readonly local = new Map<string, Map<string, number>>();

  constructor(
    private readonly store: PresenceStore | undefined,
    private readonly log: Logger,
  ) {}

  /** A connection of `subject` joined (`delta` 1) or left (-1) the channel `channelKey`. */
  change(channelKey: string, subject: string, delta: 1 | -1): void {
    let members = this.local.get(channelKey);
    if (!members) {
      if (delta < 0) return;
      members = new Map();
      this.local.set(channelKey, members);
    }
    const count = (members.get(subject) ?? 0) + delta;
    if (count > 0) members.set(subject, count);
    else members.delete(subject);
    if (members.size === 0) this.local.delete(channelKey);
    this.store?.changed(channelKey, members);
  }

  /** Channels with a member on this instance. */
  get channelCount(): number {
    return this.local.size;
  }

  /** This instance's members of a channel. */
  localMembers(channelKey: string): PresenceMembers {
    return this.local.get(channelKey) ?? new Map();
  }

  route(authenticate: (request: HttpRequest) => Principal | Promise<Principal>): Route {
    return {
      method: "GET",
      path: "/v1/channels/{channel}/presence",
      handler: async (request, params) => {
        const principal = await authenticate(request);
        requireScope(principal, "subscribe");
        const channel = requireChannel(principal, params.channel);
        const key = channelTopic(principal.tenant, channel);
        let scope = "instance";
        let members = this.localMembers(key);
        if (this.store) {
          try {
            members = await this.store.members(key);
            scope = "cluster";
          } catch (error) {
            // Redis down or slow: this instance's view is still true, and the answer says it is partial.
            this.log.warn({ err: error }, "presence store unavailable; answering for this instance");
          }
        }
        const listed = [...members]
          .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
          .slice(0, MAX_LISTED_MEMBERS)
          .map(([subject, connections]) => ({ subject, connections }));
        return jsonText(200, JSON.stringify({ channel, scope, total: members.size, members: listed }));
      },
    };
  }
}
