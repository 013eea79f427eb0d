import { describe, expect, test } from "bun:test";
import { framingProblem, framingRefusal } from "../../src/transport/framing.ts";

describe("framingProblem: one reading of where a body ends, or a refusal", () => {
  test("no framing headers, a plain Content-Length, or Transfer-Encoding chunked (any case) are fine", () => {
    expect(framingProblem(undefined, undefined)).toBeUndefined();
    expect(framingProblem("0", undefined)).toBeUndefined();
    expect(framingProblem("1048576", undefined)).toBeUndefined();
    expect(framingProblem(undefined, "chunked")).toBeUndefined();
    expect(framingProblem(undefined, "Chunked")).toBeUndefined();
  });

  test("both headers together are refused, whatever their values", () => {
    expect(framingProblem("5", "chunked")).toBe("Content-Length and Transfer-Encoding together");
  });

  test("a Content-Length that is not one plain number: repeated (joined with ', '), signed, spaced, hex, empty", () => {
    for (const value of ["5, 5", "5,6", "+5", "-1", " 5", "5 ", "0x10", "1e3", ""]) {
      expect(framingProblem(value, undefined)).toBe("Content-Length must be a single number");
    }
  });

  test("two Host headers (joined with ', ') are refused; one is fine", () => {
    expect(framingProblem(undefined, undefined, "x, y")).toBe("one Host header at most");
    expect(framingProblem(undefined, undefined, "example.com:8080")).toBeUndefined();
  });

  test("a Transfer-Encoding other than exactly chunked: lists, other codings, padding", () => {
    for (const value of ["gzip, chunked", "chunked, chunked", "identity", " chunked", "chunked ", ""]) {
      expect(framingProblem(undefined, value)).toBe("Transfer-Encoding must be chunked");
    }
  });
});

test("framingRefusal is the JSON 400 that closes the connection", () => {
  const reply = framingRefusal("Transfer-Encoding must be chunked");
  expect(reply.status).toBe(400);
  expect(reply.closeConnection).toBe(true);
  expect(JSON.parse(String(reply.body))).toMatchObject({
    error: "bad_request",
    message: "Transfer-Encoding must be chunked",
  });
});
