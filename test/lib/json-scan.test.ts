import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { decodeBody } from "../../src/features/ingest/body.ts";
import { DEPTH_ERROR, isJsonValue, JsonScanner, MAX_JSON_DEPTH } from "../../src/lib/json-scan.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const parses = (text: string) => {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
};
const LIMITS = { maxBytes: 1024 * 1024, maxRecords: 1000 };

describe("JsonScanner", () => {
  test("accepts exactly what JSON.parse accepts (generated JSON)", () => {
    fc.assert(fc.property(fc.json({ maxDepth: 8 }), (text) => isJsonValue(bytes(text)) === true));
  });

  test("accepts exactly what JSON.parse accepts (arbitrary text and JSON-like mutations)", () => {
    const jsonish = fc.stringMatching(/^[[\]{}",:0-9eE.+\-tfnrulsa\\ \n]{0,40}$/);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          jsonish,
          fc.json({ maxDepth: 4 }).map((text) => text.slice(1)),
        ),
        (text) => {
          expect(isJsonValue(bytes(text))).toBe(parses(text));
        },
      ),
      { numRuns: 3000 },
    );
  });

  test("grammar corners JSON.parse refuses are refused", () => {
    for (const text of [
      "01",
      "1.",
      ".5",
      "-",
      "1e",
      "+1",
      '"\\x"',
      '"\t"',
      "[1,]",
      '{"a":1,}',
      "tru",
      "nul",
      "{a:1}",
    ]) {
      expect([text, isJsonValue(bytes(text))]).toEqual([text, false]);
    }
    for (const text of ["-0", "1E+2", "0.5e-3", '"\\u00e9\\n"', "[]", "{}", " [ 1 , { } ] "]) {
      expect([text, isJsonValue(bytes(text))]).toEqual([text, true]);
    }
  });

  test("nesting is limited, and the limit is exact", () => {
    const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;
    expect(isJsonValue(bytes(nested(MAX_JSON_DEPTH)))).toBe(true);
    expect(isJsonValue(bytes(nested(MAX_JSON_DEPTH + 1)))).toBe(false);
    const scanner = new JsonScanner(bytes(nested(1_000_000)));
    expect(() => scanner.value()).toThrow();
    try {
      new JsonScanner(bytes(nested(1_000_000))).value();
    } catch (failure) {
      expect(failure).toBe(DEPTH_ERROR);
    }
  });
});

describe("decodeBody over generated records", () => {
  const record = fc.record(
    {
      type: fc.constantFrom("page_view", "click"),
      id: fc.string({ minLength: 1, maxLength: 8 }),
      ts: fc.oneof(fc.integer(), fc.string()),
      data: fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 5 })),
      extra: fc.jsonValue({ maxDepth: 3 }),
    },
    { requiredKeys: ["data"] },
  );
  const spacing = fc.constantFrom("", " ", "\n ", "\t");

  test("every record comes back parsed, with data and ts texts that parse to the same values", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(record, { minLength: 1, maxLength: 5 }), spacing, async (records, space) => {
        const body = `[${records.map((value) => JSON.stringify(value, null, space.length)).join(`,${space}`)}]`;
        const decoded = await decodeBody(bytes(body), "application/json", undefined, LIMITS);
        expect(decoded.length).toBe(records.length);
        decoded.forEach((raw, index) => {
          const sent = records[index] as Record<string, unknown>;
          if (!raw.ok) throw new Error(`record ${index} refused: ${raw.reason}`);
          expect(raw.value).toEqual(JSON.parse(JSON.stringify(sent)));
          expect(JSON.parse(raw.dataJson as string)).toEqual(JSON.parse(JSON.stringify(sent.data)));
          if ("ts" in sent) expect(JSON.parse(raw.tsJson as string)).toEqual(sent.ts);
        });
      }),
      { numRuns: 300 },
    );
  });

  test("NDJSON of arbitrary lines never throws anything but a GatewayError", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(fc.string(), fc.json({ maxDepth: 4 })), { maxLength: 20 }),
        async (lines) => {
          try {
            const decoded = await decodeBody(
              bytes(lines.join("\n")),
              "application/x-ndjson",
              undefined,
              LIMITS,
            );
            for (const raw of decoded) if (!raw.ok) expect(raw.reason).toBeString();
          } catch (error) {
            expect((error as Error).name).toBe("GatewayError");
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
