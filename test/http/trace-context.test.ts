import { describe, expect, test } from "bun:test";
import { traceContextOf, traceparentOf } from "../../src/http/trace-context.ts";

const headers = (values: Record<string, string>) => ({ header: (name: string) => values[name] });
/** The W3C Trace Context recommendation's own example. */
const EXAMPLE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

describe("W3C trace context", () => {
  test("valid traceparents of version 00 pass unchanged, the spec's example first", () => {
    for (const value of [EXAMPLE, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"])
      expect(traceparentOf(value)).toBe(value);
  });

  test("a later version, which may append fields, passes on as version 00 of its first four", () => {
    expect(traceparentOf(`01-${EXAMPLE.slice(3)}`)).toBe(EXAMPLE);
    expect(traceparentOf(`01-${EXAMPLE.slice(3)}-what-comes`)).toBe(EXAMPLE);
    expect(traceparentOf(`fe-${EXAMPLE.slice(3)}-${"x".repeat(8000)}`)).toBe(EXAMPLE);
    expect(
      traceContextOf(headers({ traceparent: `01-${EXAMPLE.slice(3)}-more`, tracestate: "rojo=1" })),
    ).toEqual({ traceparent: EXAMPLE, tracestate: "rojo=1" });
  });

  test("invalid ones: version ff, zero ids, upper case, wrong lengths, extra fields in version 00, flags run on", () => {
    for (const value of [
      `ff-${EXAMPLE.slice(3)}`,
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
      EXAMPLE.toUpperCase(),
      "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
      `${EXAMPLE}-extra`,
      `01-${EXAMPLE.slice(3)}x`,
      "",
    ])
      expect({ value, propagated: traceparentOf(value) }).toEqual({ value, propagated: undefined });
  });

  test("carried when valid; an invalid traceparent drops both, an invalid tracestate only itself", () => {
    expect(traceContextOf(headers({}))).toBeUndefined();
    expect(
      traceContextOf(
        headers({ traceparent: EXAMPLE, tracestate: "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE" }),
      ),
    ).toEqual({
      traceparent: EXAMPLE,
      tracestate: "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
    });
    expect(traceContextOf(headers({ traceparent: "nope", tracestate: "rojo=1" }))).toBeUndefined();
    expect(traceContextOf(headers({ traceparent: EXAMPLE, tracestate: "Not Valid" }))).toEqual({
      traceparent: EXAMPLE,
    });
    expect(traceContextOf(headers({ traceparent: EXAMPLE, tracestate: "a=1,".repeat(40) }))).toEqual({
      traceparent: EXAMPLE,
    });
  });

  test("a tracestate naming a key twice is invalid: dropped whole, as one too long in members or with a bad member is, the traceparent kept", () => {
    const stateOf = (tracestate: string) => traceContextOf(headers({ traceparent: EXAMPLE, tracestate }));
    for (const tracestate of [
      "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,rojo=1",
      "rojo=1,rojo=1",
      "rojo=1, congo=2 ,, rojo=3",
      "fw529a3039@dt=1,congo=2,fw529a3039@dt=3",
      // The other invalid ones, each dropped whole the same way.
      "rojo=1,Congo=2",
      "rojo=1,congo",
      Array.from({ length: 33 }, (_, index) => `k${index}=1`).join(","),
    ])
      expect({ tracestate, propagated: stateOf(tracestate) }).toEqual({
        tracestate,
        propagated: { traceparent: EXAMPLE },
      });
    // Same value, other keys, or a key that is another's tenant (`t@v` vs `t`): distinct keys.
    for (const tracestate of [
      "rojo=1,congo=1",
      "t@v=1,t=2",
      Array.from({ length: 32 }, (_, i) => `k${i}=1`).join(","),
    ])
      expect(stateOf(tracestate)).toEqual({ traceparent: EXAMPLE, tracestate });
  });

  test("a tracestate over 512 characters is cut by whole members: those over 128 first, then from the end", () => {
    const stateOf = (tracestate: string) =>
      traceContextOf(headers({ traceparent: EXAMPLE, tracestate }))?.tracestate;
    const member = (key: string, length: number) => `${key}=${"v".repeat(length - key.length - 1)}`;
    // 512 characters pass untouched; past that only because of spaces, they are dropped, nothing else.
    const fits = [member("a", 100), member("b", 100), member("c", 100), member("d", 100), member("e", 108)];
    expect(fits.join(",").length).toBe(512);
    expect(stateOf(fits.join(","))).toBe(fits.join(","));
    expect(stateOf(fits.join(", "))).toBe(fits.join(","));
    // Long members go first (the last of them first), before any short one, even one at the end.
    const [rojo, congo, tail] = ["rojo=00f067aa0ba902b7", "congo=t61rcWkgMzE", member("tail", 100)];
    const withLong = [rojo, member("long", 250), congo, member("long2", 200), tail].join(",");
    expect(stateOf(withLong)).toBe([rojo, member("long", 250), congo, tail].join(","));
    // Members of at most 128 characters: cut from the end.
    const many = Array.from({ length: 8 }, (_, index) => member(`k${index}`, 100));
    expect(stateOf(many.join(","))).toBe(many.slice(0, 5).join(","));
    // A single member too long for the limit leaves nothing to carry.
    expect(stateOf(member("huge", 513))).toBeUndefined();
  });
});
