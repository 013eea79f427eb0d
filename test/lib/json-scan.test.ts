import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { decodeBody, sentAs } from "../../src/features/ingest/body.ts";
import {
  DEPTH_ERROR,
  DUPLICATE_KEY_ERROR,
  isJsonValue,
  JsonScanner,
  MAX_JSON_DEPTH,
  SYNTAX_ERROR,
} from "../../src/lib/json-scan.ts";

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

describe("JsonScanner: a record refused for its nesting or a key is still checked for grammar", () => {
  const failureOf = (text: string): unknown => {
    const scanner = new JsonScanner(bytes(text), { rejectDuplicateKeys: true });
    try {
      scanner.record();
      scanner.end();
      return undefined;
    } catch (failure) {
      return failure;
    }
  };
  const deep = (inner: string) => `{"data":${"[".repeat(70)}${inner}${"]".repeat(70)}}`;

  // Found in the SPEC audit: past the first duplicate or level 65 the brackets were only counted,
  // so a malformed body around such a record got a 202 or a 422 instead of a 400.
  test("malformed JSON after a duplicate key or past the nesting limit is a syntax error", () => {
    expect(failureOf('{"data":{"element":"x","element":nope}}')).toBe(SYNTAX_ERROR);
    expect(failureOf('{"type":"click","type":"click",,"data":{"element":"a"]}')).toBe(SYNTAX_ERROR);
    expect(failureOf(deep("1,,2"))).toBe(SYNTAX_ERROR);
    expect(failureOf(`{"data":${"[".repeat(70)}1${"]".repeat(69)}}}`)).toBe(SYNTAX_ERROR);
    expect(failureOf(deep('{"a":}'))).toBe(SYNTAX_ERROR);
    expect(failureOf(deep('"\\x"'))).toBe(SYNTAX_ERROR);
    // Well-formed, they are refused for what they are.
    expect(failureOf('{"data":{"element":"x","element":"y"}}')).toBe(DUPLICATE_KEY_ERROR);
    expect(failureOf(deep('1,{"a":[true,null,"\u00e9"]},-2.5e3'))).toBe(DEPTH_ERROR);
  });

  test("past the limit, a record fails with a syntax error exactly when JSON.parse refuses it", () => {
    const jsonish = fc.stringMatching(/^[[\]{}",:0-9eE.+\-tfnrulsa\\ \n]{0,30}$/);
    fc.assert(
      fc.property(fc.oneof(jsonish, fc.json({ maxDepth: 4 })), (inner) => {
        const text = deep(inner);
        expect(failureOf(text) === SYNTAX_ERROR).toBe(!parses(text));
      }),
      { numRuns: 2000 },
    );
  });

  test("a million levels are checked without recursion", () => {
    expect(failureOf(`{"data":${"[".repeat(1_000_000)}${"]".repeat(1_000_000)}}`)).toBe(DEPTH_ERROR);
    expect(failureOf(`{"data":${"[".repeat(1_000_000)}${"]".repeat(999_999)}}`)).toBe(SYNTAX_ERROR);
  });

  test("a body whose refused record is malformed is a 400, and no record of it is taken", async () => {
    const body = '[{"type":"click","data":{"element":"x","element":nope}},{"type":"click","data":{}}]';
    await expect(decodeBody(bytes(body), "application/json", undefined, LIMITS)).rejects.toMatchObject({
      code: "malformed_json",
    });
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
          const parsed = JSON.parse(JSON.stringify(sent));
          expect(raw.value).toEqual({
            type: parsed.type,
            id: parsed.id,
            ts: parsed.ts,
            channel: parsed.channel,
            key: parsed.key,
            data: parsed.data,
          });
          expect(JSON.parse(sentAs(raw))).toEqual(parsed);
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

describe("JsonScanner: duplicate keys and inexact numbers", () => {
  const recordOf = (text: string, options = { rejectDuplicateKeys: true }) =>
    new JsonScanner(bytes(text), options).record();
  const duplicateIn = (text: string): string | undefined => {
    const scanner = new JsonScanner(bytes(text), { rejectDuplicateKeys: true });
    try {
      scanner.record();
      return undefined;
    } catch (failure) {
      expect(failure).toBe(DUPLICATE_KEY_ERROR);
      return scanner.duplicateKey;
    }
  };

  test("finds a key twice at any depth, escaped or not, in small and large objects", () => {
    expect(duplicateIn('{"data":{"amount":-5,"amount":1}}')).toBe("amount");
    expect(duplicateIn('{"data":{"a":[{"b":{"c":1,"c":2}}]}}')).toBe("c");
    expect(duplicateIn('{"data":{"a":1,"\\u0061":2}}')).toBe("a");
    expect(duplicateIn('{"type":"x","type":"y","data":{}}')).toBe("type");
    const wide = (extra: string) =>
      `{"data":{${Array.from({ length: 100 }, (_, index) => `"k${index}":${index}`).join(",")}${extra}}}`;
    expect(duplicateIn(wide(',"k7":0'))).toBe("k7");
    expect(duplicateIn(wide(',"k100":0'))).toBeUndefined();
    // The same key in sibling or nested objects is no duplicate.
    expect(duplicateIn('{"data":{"a":{"a":1},"b":{"a":2},"c":[{"a":1},{"a":2}]}}')).toBeUndefined();
    expect(duplicateIn('{"data":{"ab":1,"ba":2,"a":3,"b":4}}')).toBeUndefined();
  });

  test("without the option, duplicates pass as before; after a duplicate, the next record is read", () => {
    expect(() => recordOf('{"a":1,"a":2}', { rejectDuplicateKeys: false })).not.toThrow();
    const scanner = new JsonScanner(bytes('{"a":{"b":1,"b":2}} {"c":1}'), { rejectDuplicateKeys: true });
    expect(() => scanner.record()).toThrow();
    expect(scanner.record().start).toBe(20);
  });

  test("generated objects without duplicates pass; JSON.parse agrees on the keys", () => {
    fc.assert(
      fc.property(fc.json({ maxDepth: 6 }), (text) => {
        const record = `{"data":${text}}`;
        expect(duplicateIn(record)).toBeUndefined();
      }),
    );
  });

  test("marks records holding a number JSON.parse rounds, and only those", () => {
    expect(recordOf('{"data":{"a":1,"b":[2.5,-0.1,1e3,123456789012345]}}').inexactNumbers).toBe(false);
    expect(recordOf('{"data":{"a":1.0000000000000000001}}').inexactNumbers).toBe(true);
    expect(recordOf('{"data":{"a":[9007199254740993]}}').inexactNumbers).toBe(true);
    expect(recordOf('{"data":{"a":1e400}}').inexactNumbers).toBe(true);
    expect(recordOf('{"data":{"a":9007199254740992}}').inexactNumbers).toBe(false);
  });
});
