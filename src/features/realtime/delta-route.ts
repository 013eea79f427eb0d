import { channelTopic, requireChannel } from "../../domain/channel.ts";
import { GatewayError } from "../../domain/errors.ts";
import { type Principal, requireScope } from "../../domain/principal.ts";
import type { Route } from "../../ports/route.ts";
import type { HttpRequest } from "../../ports/transport.ts";
import { EVENT_FRAME_PREFIX } from "./fanout.ts";
import type { ChannelHistory, HistoryEvent } from "./history.ts";

/** GET /v1/channels/{channel}/events: what a client missed, from this instance's bounded history. */
export function deltaRoute(deps: {
  authenticate(request: HttpRequest): Promise<Principal>;
  history: ChannelHistory;
}): Route {
  return {
    method: "GET",
    path: "/v1/channels/{channel}/events",
    handler: async (request, params) => {
      const principal = await deps.authenticate(request);
      requireScope(principal, "subscribe");
      const channel = requireChannel(principal, params.channel);
      const topic = channelTopic(principal.tenant, channel);
      const since = request.query.get("since") ?? undefined;
      const replay = deps.history.after(topic, since);
      if (!replay.ok) throw new GatewayError("history_gone", "since is older than the kept history");
      const lastEventId = JSON.stringify(deps.history.lastId(topic) ?? null);
      const events = replay.events.map(toDelta).join(",");
      return {
        status: 200,
        headers: { "content-type": "application/json" },
        body: `{"channel":${JSON.stringify(channel)},"events":[${events}],"lastEventId":${lastEventId}}`,
      };
    },
  };
}

/** The history frame without its `type` member, as text: numbers in `data` stay as they were sent. */
function toDelta(event: HistoryEvent): string {
  return `{${event.frame.slice(EVENT_FRAME_PREFIX.length)}`;
}
