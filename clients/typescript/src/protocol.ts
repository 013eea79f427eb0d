/**
 * The version of the gateway's WebSocket protocol this client speaks
 * (`info.version` of the repository's asyncapi.yaml): in-band token refresh,
 * `token_expiring`, `subscribed.lastEventId` for empty channels, `try_again`.
 */
export const PROTOCOL_VERSION = "1";
