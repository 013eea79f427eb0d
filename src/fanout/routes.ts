import type { Principal } from "../auth/principal.ts";
import { channelAllowed, requireScope } from "../auth/principal.ts";
import { GatewayError } from "../errors/errors.ts";
import { json } from "../http/reply.ts";
import type { Route } from "../http/router.ts";
import { CHANNEL_PATTERN } from "../ingest/record.ts";
import type { HttpRequest } from "../transport/types.ts";
import type { FanoutBus, FanoutMessage } from "./bus.ts";
import { channelTopic } from "./fanout.ts";
import type { ChannelHistory, HistoryEvent } from "./history.ts";

export interface FanoutRouteDependencies {
  authenticate(request: HttpRequest): Promise<Principal>;
  bus: FanoutBus;
  history: ChannelHistory;
  maxBodyBytes: number;
}

function checkChannel(principal: Principal, channel: unknown): string {
  if (typeof channel !== "string" || !CHANNEL_PATTERN.test(channel)) {
    throw new GatewayError("bad_request", '"channel" must match [A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}');
  }
  if (!channelAllowed(principal, channel))
    throw new GatewayError("forbidden", "channel not allowed for this token");
  return channel;
}

/** POST /v1/publish and GET /v1/channels/{channel}/events. */
export function fanoutRoutes(deps: FanoutRouteDependencies): Route[] {
  return [
    {
      method: "POST",
      path: "/v1/publish",
      handler: async (request) => {
        const principal = await deps.authenticate(request);
        requireScope(principal, "publish");
        const mediaType = request.header("content-type")?.split(";")[0]?.trim().toLowerCase();
        if (mediaType !== "application/json")
          throw new GatewayError("unsupported_media_type", "use application/json");
        let body: Record<string, unknown>;
        try {
          body = JSON.parse(new TextDecoder().decode(await request.body()));
        } catch (error) {
          throw new GatewayError("malformed_json", `malformed JSON: ${(error as Error).message}`);
        }
        if (body === null || typeof body !== "object" || Array.isArray(body)) {
          throw new GatewayError("bad_request", "the body must be a JSON object");
        }
        const broadcast = body.broadcast === true;
        const message: FanoutMessage = { tenant: principal.tenant, data: body.data ?? null, ts: Date.now() };
        if (broadcast) {
          message.broadcast = true;
          if (body.channel !== undefined) message.channel = checkChannel(principal, body.channel);
        } else message.channel = checkChannel(principal, body.channel);
        await deps.bus.publish([message]);
        return json(202, { published: 1 });
      },
    },
    {
      method: "GET",
      path: "/v1/channels/{channel}/events",
      handler: async (request, params) => {
        const principal = await deps.authenticate(request);
        requireScope(principal, "subscribe");
        const channel = checkChannel(principal, params.channel);
        const topic = channelTopic(principal.tenant, channel);
        const since = request.query.get("since") ?? undefined;
        const replay = deps.history.after(topic, since);
        if (!replay.ok) throw new GatewayError("history_gone", "since is older than the kept history");
        return json(200, {
          channel,
          events: replay.events.map(toDelta),
          lastEventId: deps.history.lastId(topic) ?? null,
        });
      },
    },
  ];
}

function toDelta(event: HistoryEvent): unknown {
  const frame = JSON.parse(event.frame) as Record<string, unknown>;
  delete frame.type;
  return frame;
}
