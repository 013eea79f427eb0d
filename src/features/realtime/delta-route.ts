import { requireChannel } from "../../domain/channel.ts";
import { GatewayError } from "../../domain/errors.ts";
import { authorizedReader, type ReaderChecks } from "../../http/caller.ts";
import { jsonText } from "../../http/reply.ts";
import type { Route } from "../../ports/route.ts";
import { EVENT_FRAME_PREFIX } from "./fanout.ts";
import type { HistoryEvent } from "./history.ts";
import { isPending, type Resume, type ResumeOutcome, requireSince } from "./resume.ts";

export const DEFAULT_PAGE = 100;
export const MAX_PAGE = 1000;

/**
 * GET /v1/channels/{channel}/events: a page of what a client missed, from this
 * instance's history or read back from the fan-out log (see `Resume`), after
 * the per-IP request budget, the token and the scope `subscribe`.
 */
export function deltaRoute(
  deps: ReaderChecks & {
    resume: Resume;
    /** Marks the channel wanted here for a while, so the next page comes from memory. */
    interested?(tenant: string, channel: string): void;
  },
): Route {
  return {
    method: "GET",
    path: "/v1/channels/{channel}/events",
    handler: async (request, params) => {
      // The client IP's request budget first, as every API route: a client over it costs no signature check.
      const { principal, rateLimit } = await authorizedReader(request, "subscribe", deps);
      const channel = requireChannel(principal, params.channel);
      const limit = pageLimit(request.query.get("limit"));
      // An empty since is none, as on an event stream: EventSource's lastEventId is "" before any event.
      const since = requireSince(request.query.get("since") || undefined, "since");
      // The position is taken first: a read of the log answers up to where live delivery stood then.
      const lastEventId = JSON.stringify(deps.resume.position(principal.tenant, channel));
      const resumed =
        since === undefined
          ? deps.resume.latest(principal.tenant, channel, limit)
          : deps.resume.after(principal.tenant, channel, since, limit);
      deps.interested?.(principal.tenant, channel);
      const page: ResumeOutcome = isPending(resumed) ? await resumed.outcome : resumed;
      if (page.kind === "gone") throw new GatewayError("history_gone", page.message);
      if (page.kind === "try_again") {
        throw new GatewayError("try_again", page.message, {
          "retry-after": String(Math.ceil(page.retryAfterMs / 1000)),
        });
      }
      const events = page.events.map(toDelta).join(",");
      // Only on a scan a bound cut short: older events may exist that were not read.
      const truncated = page.kind === "events" && page.truncated ? `,"truncated":true` : "";
      return jsonText(
        200,
        `{"channel":${JSON.stringify(channel)},"events":[${events}],"lastEventId":${lastEventId},"next":${JSON.stringify(page.next)}${truncated}}`,
        rateLimit?.own,
        rateLimit?.shared,
      );
    },
  };
}

/**
 * `limit`: 100 when absent; a page holds at most 1,000 events, so a larger
 * integer asks for that many (the SPEC's "at most 1000": the client walks on
 * with `next`); anything but a positive integer is a 400.
 */
export function pageLimit(raw: string | null): number {
  if (raw === null) return DEFAULT_PAGE;
  const digits = raw.replace(/^0+/, "");
  if (!/^\d+$/.test(raw) || digits === "") {
    throw new GatewayError("bad_request", "limit must be a positive integer (a page holds at most 1000)");
  }
  // Past four digits it is past MAX_PAGE, however many more it has.
  return digits.length > 4 ? MAX_PAGE : Math.min(Number(digits), MAX_PAGE);
}

/** The history frame without its `type` member, as text: numbers in `data` stay as they were sent. */
function toDelta(event: HistoryEvent): string {
  return `{${event.frame.slice(EVENT_FRAME_PREFIX.length)}`;
}
