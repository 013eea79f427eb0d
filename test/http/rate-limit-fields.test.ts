import { describe, expect, test } from "bun:test";
import { replyHeaders } from "../../src/http/header-block.ts";
import { AdmittedFields, addRateLimitFields } from "../../src/http/rate-limit-fields.ts";

/**
 * A Structured Fields List (RFC 8941) of Items whose bare item is a String
 * and whose parameters are Integers, Strings or Byte Sequences: what the
 * draft's RateLimit and RateLimit-Policy examples hold. Strict: anything else
 * throws, so a field that parses here is well formed for that subset.
 */
function parseList(field: string): Array<{ name: string; params: Record<string, string | number> }> {
  const member =
    /^"((?:[^"\\]|\\["\\])*)"((?:;[a-z*][a-z0-9_.*-]*(?:=(?:-?[0-9]{1,15}|"(?:[^"\\]|\\["\\])*"|:[A-Za-z0-9+/=]*:))?)*)$/;
  return field.split(/\s*,\s*/).map((text) => {
    const match = member.exec(text);
    if (!match) throw new Error(`not a structured list item: ${text}`);
    const params: Record<string, string | number> = {};
    for (const param of (match[2] as string).split(";").slice(1)) {
      const [key, value = "?1"] = param.split("=") as [string, string?];
      params[key] = /^-?[0-9]+$/.test(value) ? Number(value) : value;
    }
    return { name: match[1] as string, params };
  });
}

describe("RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers-10)", () => {
  test("the parser reads the draft's own examples", () => {
    expect(parseList('"default";q=100;w=10')).toEqual([{ name: "default", params: { q: 100, w: 10 } }]);
    expect(parseList('"permin";q=50;w=60,"perhr";q=1000;w=3600')).toHaveLength(2);
    expect(parseList('"peruser";q=65535;qu="content-bytes";w=10;pk=:sdfjLJUOUH==:')[0]?.params.q).toBe(65535);
    expect(parseList('"default";r=50;t=30')).toEqual([{ name: "default", params: { r: 50, t: 30 } }]);
    expect(parseList('"default";r=999;pk=:dHJpYWwxMjEzMjM=:')[0]?.params.r).toBe(999);
    expect(() => parseList("default;r=50")).toThrow();
  });

  test("derived from the legacy headers, in the draft's syntax, the legacy headers kept", () => {
    const headers = addRateLimitFields(
      { "ratelimit-limit": "100", "ratelimit-remaining": "50", "ratelimit-reset": "30" },
      "tenant",
      10,
    );
    // The draft's examples `"default";q=100;w=10` and `"default";r=50;t=30`, with our policy's name.
    expect(headers).toEqual({
      "ratelimit-limit": "100",
      "ratelimit-remaining": "50",
      "ratelimit-reset": "30",
      "ratelimit-policy": '"tenant";q=100;w=10',
      ratelimit: '"tenant";r=50;t=30',
    });
    expect(parseList(headers["ratelimit-policy"] as string)).toEqual([
      { name: "tenant", params: { q: 100, w: 10 } },
    ]);
    expect(parseList(headers.ratelimit as string)).toEqual([{ name: "tenant", params: { r: 50, t: 30 } }]);
  });

  test("on the fast path, a block shared per budget and the request's own count: the same headers as derived", () => {
    const fields = new AdmittedFields("tenant", 1);
    for (const [remaining, reset] of [
      [50, 30],
      [0, 1],
      [999, 1],
    ] as const) {
      const legacy = {
        "ratelimit-limit": "1000",
        "ratelimit-remaining": String(remaining),
        "ratelimit-reset": String(reset),
      };
      const admitted = fields.headers(1000, remaining, reset);
      expect(
        replyHeaders({ status: 202, body: "", headers: { ...admitted.own }, sharedHeaders: admitted.shared }),
      ).toEqual(addRateLimitFields(legacy, "tenant", 1));
    }
    // One block per budget, made once: an adapter keeps what it builds from it.
    expect(fields.headers(1000, 5, 1).shared).toBe(fields.headers(1000, 7, 1).shared);
    expect(fields.headers(2000, 5, 1).shared.fields["ratelimit-limit"]).toBe("2000");
  });

  test("nothing is added where no limit applied", () => {
    expect(addRateLimitFields({}, "ip", 1)).toEqual({});
  });
});
