import { describe, expect, test } from "bun:test";
import Ajv2020 from "ajv/dist/2020.js";
import { fullFormats } from "ajv-formats/dist/formats.js";
import fc from "fast-check";
import {
  addSchemaFormats,
  isCommonUrl,
  jsonPointer,
  jsonPointerUriFragment,
  relativeJsonPointer,
  uri,
  uriReference,
  uriTemplate,
} from "../../../src/infra/validation/formats.ts";

const fullUri = fullFormats.uri as (text: string) => boolean;
const fullUriReference = fullFormats["uri-reference"] as RegExp;

/** Strings built from the characters URIs are made of, and a few that they are not. */
const uriLike = fc
  .array(
    fc.oneof(
      fc.constantFrom("http", "https", "ws", "a+b.c-d", "1x", "://", ":", "/", "//", "?", "#", "@", ":80"),
      fc.constantFrom("%20", "%zz", "%4", "[::1]", "[v1.x]", "example.com", "127.0.0.1", "é", " ", "\n"),
      fc.string({ unit: fc.constantFrom(..."azAZ09-._~!$&'()*+,;=:@/?#%[]<>\"{}|\\^` ") }),
    ),
    { maxLength: 8 },
  )
  .map((parts) => parts.join(""));

describe("uri format", () => {
  test("answers as ajv-formats' uri for any string", () => {
    fc.assert(
      fc.property(uriLike, (text) => uri(text) === fullUri(text)),
      { numRuns: 20_000 },
    );
    fc.assert(
      fc.property(fc.webUrl({ withQueryParameters: true, withFragments: true }), (text) => uri(text)),
    );
  });

  test("every string the common-URL pattern takes is a uri for ajv-formats", () => {
    fc.assert(
      fc.property(uriLike, (text) => !isCommonUrl(text) || fullUri(text)),
      { numRuns: 20_000 },
    );
  });

  test("the usual URLs take the fast pattern; others fall back to the full check", () => {
    for (const text of [
      "https://example.com/bench",
      "http://localhost:8080/a/b%20c?x=1&y=%2F#top",
      "HTTPS://Shop.Example.org/p/123?ref=home",
    ]) {
      expect(isCommonUrl(text)).toBe(true);
    }
    // Userinfo and IP literals are URIs the fast pattern leaves to the full one.
    for (const text of [
      "https://user:pw@example.com/",
      "http://[::1]:80/x",
      "urn:isbn:0451450523",
      "mailto:a@b.c",
    ]) {
      expect(isCommonUrl(text)).toBe(false);
      expect(uri(text)).toBe(true);
    }
    for (const text of ["example.com", "/relative/path", "https://exa mple.com", "http://x/%zz", ""]) {
      expect(uri(text)).toBe(false);
    }
  });

  test("uri-reference answers as ajv-formats' for any string", () => {
    fc.assert(
      fc.property(uriLike, (text) => uriReference(text) === fullUriReference.test(text)),
      { numRuns: 20_000 },
    );
  });

  test("a long URI is judged through, at once, on both runtimes", () => {
    // ajv-formats' patterns repeat a group once per character: past some 50 000 of them Bun (JavaScriptCore)
    // gave up after about half a second and answered "no match", Node "a URI".
    const long = 200_000;
    const valid = [
      `data:image/png;base64,${"QUJD".repeat(long / 4)}`,
      `urn:x:${"b%20".repeat(long / 4)}`,
      `https://example.com/${"a/".repeat(long / 2)}?${"q=1&".repeat(long / 4)}`,
      `mailto:${"a".repeat(long)}@example.com`,
    ];
    const invalid = valid.map((text) => `${text} `).concat(`urn:x:${"b%20".repeat(long / 4)}%2`);
    const started = performance.now();
    for (const text of valid) {
      expect(uri(text)).toBe(true);
      expect(uriReference(text)).toBe(true);
    }
    expect(uriReference(`img/${"b%20/".repeat(long / 5)}`)).toBe(true);
    for (const text of invalid) {
      expect(uri(text)).toBe(false);
      expect(uriReference(text)).toBe(false);
    }
    expect(performance.now() - started).toBeLessThan(1000);
  });

  test("the JSON pointer and URI template formats answer as ajv-formats' for any string", () => {
    const pointerLike = fc
      .array(
        fc.oneof(
          fc.constantFrom("/", "~0", "~1", "~", "~2", "%20", "%zz", "%4", "#", "0", "1", "10", "01"),
          fc.constantFrom("{", "}", "{a}", "{+a,b:3}", "{,x}", "{a*}", ":10000", " ", '"', "é", "\ud800"),
          fc.string({ unit: fc.constantFrom(..."aZ09_-.!$&'()*+,;:=@/?#%~{}|<>^`\\ ") }),
        ),
        { maxLength: 8 },
      )
      .map((parts) => parts.join(""));
    const formats: [string, (text: string) => boolean][] = [
      ["json-pointer", jsonPointer],
      ["json-pointer-uri-fragment", jsonPointerUriFragment],
      ["relative-json-pointer", relativeJsonPointer],
      ["uri-template", uriTemplate],
    ];
    for (const [name, ours] of formats) {
      const theirs = fullFormats[name as keyof typeof fullFormats] as RegExp;
      fc.assert(
        fc.property(pointerLike, (text) => ours(text) === theirs.test(text)),
        { numRuns: 10_000 },
      );
    }
  });

  test("a long JSON pointer or URI template is judged through, at once", () => {
    // ajv-formats' uri-template gave up on Bun past some 50 000 repetitions (a valid template refused);
    // its pointers took a fifth of a second per megabyte there.
    const long = 800_000;
    const started = performance.now();
    expect(jsonPointer("/a~0".repeat(long / 4))).toBe(true);
    expect(jsonPointer(`${"/a~0".repeat(long / 4)}~`)).toBe(false);
    expect(jsonPointerUriFragment(`#${"/a%20~1".repeat(long / 7)}`)).toBe(true);
    expect(relativeJsonPointer(`1${"/a~1".repeat(long / 4)}`)).toBe(true);
    expect(uriTemplate("b".repeat(long))).toBe(true);
    expect(uriTemplate("b{x}".repeat(long / 4))).toBe(true);
    expect(uriTemplate(`${"b{x}".repeat(long / 4)}{`)).toBe(false);
    expect(performance.now() - started).toBeLessThan(1000);
  });

  test("schemas compiled with the gateway's formats use it", () => {
    const ajv = new Ajv2020({ strict: false });
    addSchemaFormats(ajv);
    const validate = ajv.compile({ type: "string", format: "uri" });
    expect(validate("https://example.com/a")).toBe(true);
    expect(validate("https://user@example.com/a")).toBe(true);
    expect(validate("not a uri")).toBe(false);
    expect(ajv.compile({ type: "string", format: "uri-reference" })(`a/${"b".repeat(100_000)}`)).toBe(true);
    expect(ajv.compile({ type: "string", format: "uri-template" })("b{x}".repeat(50_000))).toBe(true);
    expect(ajv.compile({ type: "string", format: "json-pointer" })("/a~2")).toBe(false);
    const email = ajv.compile({ type: "string", format: "email" });
    expect(email("someone@example.com")).toBe(true);
    expect(email("nobody")).toBe(false);
  });
});
