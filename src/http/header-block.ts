import { PairMemo } from "../lib/pair-memo.ts";
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

/** Blocks joined before, by their first and then second block; weak, so they go with their blocks. */
const joined = new PairMemo((first: HeaderBlock, second: HeaderBlock) =>
  headerBlock({ ...first.fields, ...second.fields }),
);

/**
 * One block of `first`'s fields and then `second`'s, which win on a name
 * both have; made once per pair (a reply's own block, such as a budget's
 * RateLimit fields, under the router's policy block) and kept while both are.
 */
export function joinBlocks(first: HeaderBlock, second: HeaderBlock): HeaderBlock {
  return joined.get(first, second);
}

/** A reply's headers as one object: its own, then its shared block's, which win on a name both have. */
export function replyHeaders(reply: HttpReply): Record<string, string> | undefined {
  const shared = reply.sharedHeaders;
  return shared === undefined ? reply.headers : Object.assign({}, reply.headers, shared.fields);
}
