import { GatewayError } from "./errors.ts";
import { channelAllowed, insufficientScope, type Principal } from "./principal.ts";

/**
 * Channels: names clients use, and how they map to the engine's pub/sub topics.
 * Channels live inside a tenant: two tenants never share a topic.
 */

/** Channel names: no "/" (the topic separator below) and no leading "$" (reserved). */
export const CHANNEL_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$/;

/** Engine topic of one tenant's channel. "/" never occurs in tenant or channel names. */
export const channelTopic = (tenant: string, channel: string) => `t/${tenant}/${channel}`;

/** The tenant of an engine topic `t/<tenant>/<channel>`. */
export const tenantOfTopic = (topic: string) => topic.slice(2, topic.indexOf("/", 2));

/**
 * A 31-bit FNV-1a hash of a channel topic's UTF-8 bytes. The fan-out reader
 * hashes a record's topic straight from its tenant and channel header bytes
 * (`channelTopicHashAt`) and skips the record when no wanted topic has that
 * hash, with no string made for it; an equal hash is then checked by name.
 */
export function topicHash(topic: string): number {
  const bytes = Buffer.from(topic);
  return fnv1a(bytes, 0, bytes.length, FNV_OFFSET) & 0x3fffffff;
}

/** `topicHash(channelTopic(tenant, channel))` of a tenant and a channel given as byte ranges of `bytes`. */
export function channelTopicHashAt(
  bytes: Uint8Array,
  tenantStart: number,
  tenantEnd: number,
  channelStart: number,
  channelEnd: number,
): number {
  const tenant = fnv1a(bytes, tenantStart, tenantEnd, CHANNEL_TOPIC_SEED);
  return fnv1a(bytes, channelStart, channelEnd, Math.imul(tenant ^ SLASH, FNV_PRIME)) & 0x3fffffff;
}

const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 0x01000193;
const SLASH = 0x2f;
/** The hash of the topic prefix `t/`, where every channel topic starts. */
const CHANNEL_TOPIC_SEED = fnv1a(Buffer.from("t/"), 0, 2, FNV_OFFSET);

function fnv1a(bytes: Uint8Array, start: number, end: number, seed: number): number {
  let hash = seed;
  for (let i = start; i < end; i++) hash = Math.imul(hash ^ (bytes[i] as number), FNV_PRIME);
  return hash;
}

/** Engine topic every connection of a tenant joins, for broadcasts. */
export const broadcastTopic = (tenant: string) => `b/${tenant}`;

/** Whether an engine topic is a tenant's broadcast topic (`broadcastTopic`). */
export const isBroadcastTopic = (topic: string) => topic.startsWith("b/");

/** `channel` as a channel this principal may use; a 400 or 403 GatewayError otherwise. */
export function requireChannel(principal: Principal, channel: unknown): string {
  if (typeof channel !== "string" || !CHANNEL_PATTERN.test(channel)) {
    throw new GatewayError("bad_request", '"channel" must match [A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}');
  }
  if (!channelAllowed(principal, channel)) throw insufficientScope("channel not allowed for this token");
  return channel;
}
