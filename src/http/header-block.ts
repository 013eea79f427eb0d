import type { HeaderBlock, HttpReply } from "../ports/transport.ts";

/**
 * Headers that many replies share (the response policy, CORS, a route's
 * deprecation), with their HTTP/1.1 text made once: the router picks one
 * per route and origin instead of merging objects on every request, and the
 * uWebSockets.js adapter writes the text as it is.
 */
export function headerBlock(fields: Readonly<Record<string, string>>): HeaderBlock {
  let text = "";
  for (const name in fields) text += `\r\n${name}: ${fields[name]}`;
  return Object.freeze({ fields: Object.freeze({ ...fields }), text });
}

/** A reply's headers as one object: its own, then its shared block's, which win on a name both have. */
export function replyHeaders(reply: HttpReply): Record<string, string> | undefined {
  const shared = reply.sharedHeaders;
  return shared === undefined ? reply.headers : Object.assign({}, reply.headers, shared.fields);
}
