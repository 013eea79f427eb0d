import { expect, test } from "bun:test";
import { readableMediaType } from "../../src/features/ingest/body.ts";
import { requireUtf8Charset } from "../../src/http/charset.ts";

// Found in the SPEC audit: `charset=utf-16` was read as UTF-8, and its body refused as malformed (400).
test("a JSON body declared in a charset other than UTF-8 is a 415 naming it; UTF-8 and ASCII in any spelling are read", () => {
  for (const contentType of [
    "application/json; charset=utf-16",
    "application/json;charset=ISO-8859-1",
    'application/x-ndjson; charset="windows-1252"',
    "application/cloudevents+json; charset=latin1",
  ]) {
    expect(() => readableMediaType(contentType, undefined)).toThrow(
      expect.objectContaining({ code: "unsupported_media_type" }),
    );
  }
  expect(() => requireUtf8Charset("application/json; charset=utf-16")).toThrow(
    "charset utf-16 is not supported: JSON is read as UTF-8",
  );
  for (const contentType of [
    "application/json",
    "application/json; charset=utf-8",
    "Application/JSON; Charset=UTF-8",
    'application/json; charset="utf8"',
    "application/json;charset=us-ascii",
    "application/x-ndjson; profile=x",
    undefined,
  ])
    expect(() => requireUtf8Charset(contentType)).not.toThrow();
  expect(readableMediaType("application/json; charset=UTF-8", undefined)).toBe("application/json");
});
