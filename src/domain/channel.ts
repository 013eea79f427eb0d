import { GatewayError } from "./errors.ts";
import { channelAllowed, type Principal } from "./principal.ts";

/**
 * Channels: names clients use, and how they map to the engine's pub/sub topics.
 * Channels live inside a tenant: two tenants never share a topic.
 */

/** Channel names: no "/" (the topic separator below) and no leading "$" (reserved). */
export const CHANNEL_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$/;

/** Engine topic of one tenant's channel. "/" never occurs in tenant or channel names. */
export const channelTopic = (tenant: string, channel: string) => `t/${tenant}/${channel}`;

/** Engine topic every connection of a tenant joins, for broadcasts. */
export const broadcastTopic = (tenant: string) => `b/${tenant}`;

/** `channel` as a channel this principal may use; a 400 or 403 GatewayError otherwise. */
export function requireChannel(principal: Principal, channel: unknown): string {
  if (typeof channel !== "string" || !CHANNEL_PATTERN.test(channel)) {
    throw new GatewayError("bad_request", '"channel" must match [A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}');
  }
  if (!channelAllowed(principal, channel))
    throw new GatewayError("forbidden", "channel not allowed for this token");
  return channel;
}
