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
});
