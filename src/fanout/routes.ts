import type { Principal } from "../auth/principal.ts";
import { channelAllowed, requireScope } from "../auth/principal.ts";
import { GatewayError } from "../errors/errors.ts";
import { json } from "../http/reply.ts";
import type { Route } from "../http/router.ts";
import { CHANNEL_PATTERN } from "../ingest/record.ts";
import { DEPTH_ERROR, JsonScanner, type RecordSpans, TOO_DEEP_REASON } from "../json/scan.ts";
import type { HttpRequest } from "../transport/types.ts";
import type { FanoutBus, FanoutMessage } from "./bus.ts";
import { channelTopic, EVENT_FRAME_PREFIX } from "./fanout.ts";
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

/**
 * The publish body, checked by the scanner before JSON.parse (bounded nesting,
 * no exception on bad input), with the exact text of its `data`.
 */
function parsePublishBody(bytes: Uint8Array): {
  body: Record<string, unknown>;
  dataJson: string | undefined;
} {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const scanner = new JsonScanner(text);
  let spans: RecordSpans;
  try {
    spans = scanner.record();
    scanner.end();
  } catch (failure) {
    if (failure === DEPTH_ERROR) throw new GatewayError("bad_request", TOO_DEEP_REASON);
    throw new GatewayError("malformed_json", `malformed JSON near byte ${scanner.pos}`);
  }
  const body = JSON.parse(text.toString("utf8", spans.start, spans.end)) as unknown;
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new GatewayError("bad_request", "the body must be a JSON object");
  }
  return {
    body: body as Record<string, unknown>,
    dataJson: spans.data && text.toString("utf8", spans.data.start, spans.data.end),
  };
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
        const { body, dataJson } = parsePublishBody(await request.body());
        const broadcast = body.broadcast === true;
        const message: FanoutMessage = {
          tenant: principal.tenant,
          dataJson: dataJson ?? "null",
          ts: Date.now(),
        };
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
        const lastEventId = JSON.stringify(deps.history.lastId(topic) ?? null);
        const events = replay.events.map(toDelta).join(",");
        return {
          status: 200,
          headers: { "content-type": "application/json" },
          body: `{"channel":${JSON.stringify(channel)},"events":[${events}],"lastEventId":${lastEventId}}`,
        };
      },
    },
  ];
}

/** The history frame without its `type` member, as text: numbers in `data` stay as they were sent. */
function toDelta(event: HistoryEvent): string {
  return `{${event.frame.slice(EVENT_FRAME_PREFIX.length)}`;
}
