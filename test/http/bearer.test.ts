import { describe, expect, test } from "bun:test";
import { GatewayError } from "../../src/domain/errors.ts";
import { bearerToken } from "../../src/http/bearer.ts";

function rejection(header: string | undefined): GatewayError {
  try {
    bearerToken(header);
  } catch (error) {
    if (error instanceof GatewayError) return error;
    throw error;
  }
  throw new Error(`accepted ${JSON.stringify(header)}`);
}

describe("bearerToken", () => {
  test("returns the token of a Bearer header", () => {
    expect(bearerToken("Bearer abc.def.ghi")).toBe("abc.def.ghi");
  });

  test("reads the scheme case-insensitively", () => {
    expect(bearerToken("bearer abc")).toBe("abc");
    expect(bearerToken("BEARER abc")).toBe("abc");
  });

  test("a missing or empty header is a 401 'missing bearer token'", () => {
    for (const header of [undefined, ""]) {
      const error = rejection(header);
      expect(error.code).toBe("unauthorized");
      expect(error.status).toBe(401);
      expect(error.message).toBe("missing bearer token");
      expect(error.headers["www-authenticate"]).toBe("Bearer");
    }
  });

  test("another scheme, no token or extra words are a 401 'malformed Authorization header'", () => {
    for (const header of ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer a b", "Bearerabc", "abc"]) {
      const error = rejection(header);
      expect(error.code).toBe("unauthorized");
      expect(error.message).toBe("malformed Authorization header");
    }
  });

  test("another scheme holds no bearer token: a bare Bearer challenge, no error code (RFC 6750 §3.1)", () => {
    for (const header of ["Basic dXNlcjpwYXNz", "Bearerabc", "abc"]) {
      expect(rejection(header).headers["www-authenticate"]).toBe("Bearer");
    }
  });

  test("a malformed Bearer header is an invalid_request challenge", () => {
    for (const header of ["Bearer", "Bearer ", "Bearer a b", "Bearer a, Bearer b"]) {
      expect(rejection(header).headers["www-authenticate"]).toBe(
        'Bearer error="invalid_request", error_description="malformed Authorization header"',
      );
    }
  });
});
