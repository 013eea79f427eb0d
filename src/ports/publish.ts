import type { Principal } from "../domain/principal.ts";
import type { AdmittedHeaders } from "./admission.ts";

/** A publisher's W3C trace context, already found valid. */
export interface PublishTrace {
  traceparent: string;
  tracestate?: string;
}

/** One message to a channel of the principal's tenant, or to every connection of it (`broadcast`). */
export interface PublishRequest {
  /** As the client sent it: the publisher checks it against the principal's channels. */
  channel: unknown;
  broadcast: boolean;
  /** The payload as JSON text, forwarded byte for byte. */
  dataJson: string;
  trace: PublishTrace | undefined;
}

/**
 * Publishes through the fan-out bus, from `POST /v1/publish` or a WebSocket
 * `publish` frame: resolves with the RateLimit headers (none with limits off) once Kafka
 * acknowledged, rejects with a GatewayError (forbidden channel, rate limited,
 * no acknowledgement in time).
 */
export type Publish = (principal: Principal, request: PublishRequest) => Promise<AdmittedHeaders>;
