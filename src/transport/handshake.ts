/**
 * A `Sec-WebSocket-Key`: 16 bytes in base64 (RFC 6455 §4.1). A repeated
 * header arrives joined with ", " and is no key.
 */
const WEBSOCKET_KEY = /^[A-Za-z0-9+/]{22}==$/;

/**
 * Whether a request is a WebSocket opening handshake the engine may upgrade
 * (RFC 6455 §4.2.1): a GET asking `Upgrade: websocket` with one well-formed
 * key. Both engines ask this one question: uWebSockets.js upgraded a request
 * without an `Upgrade` header, with two keys or with a key that is no base64,
 * and Bun.serve answered the last with a bare 400. The rest go to the router,
 * which answers them (400, 405 or 426) alike on both.
 */
export function isWebSocketHandshake(
  method: string,
  upgrade: string | undefined,
  key: string | undefined,
): key is string {
  return (
    method === "GET" && upgrade?.toLowerCase() === "websocket" && key !== undefined && WEBSOCKET_KEY.test(key)
  );
}
