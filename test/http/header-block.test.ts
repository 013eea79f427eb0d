import { expect, test } from "bun:test";
import { headerBlock, replyHeaders } from "../../src/http/header-block.ts";

test("a header block's text is each field as an HTTP/1.1 header line, in order, and it cannot change", () => {
  const block = headerBlock({ "x-content-type-options": "nosniff", "cache-control": "no-store" });
  expect(block.text).toBe("\r\nx-content-type-options: nosniff\r\ncache-control: no-store");
  expect(Object.isFrozen(block.fields)).toBe(true);
});

test("a reply's headers as one object: the shared block wins on a name both have", () => {
  const sharedHeaders = headerBlock({ "x-content-type-options": "nosniff", vary: "Origin" });
  const headers = { "content-type": "application/json", "x-content-type-options": "sniff" };
  expect(replyHeaders({ status: 200, body: "", headers, sharedHeaders })).toEqual({
    "content-type": "application/json",
    "x-content-type-options": "nosniff",
    vary: "Origin",
  });
  expect(replyHeaders({ status: 200, body: "", headers })).toBe(headers);
});
