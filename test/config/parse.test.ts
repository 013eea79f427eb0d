import { expect, test } from "bun:test";
import { loadConfig } from "../../src/config/config.ts";
import { originList } from "../../src/config/parse.ts";

test("CORS_ORIGINS: * alone, or origins as browsers serialise them", () => {
  expect(originList("*")).toBe("*");
  expect(originList(" https://app.example.com, http://localhost:3000 ,https://b.example/")).toEqual([
    "https://app.example.com",
    "http://localhost:3000",
    "https://b.example",
  ]);
  for (const bad of [
    "",
    ",",
    "*, https://app.example.com",
    "app.example.com",
    "https://app.example.com/path",
    "ftp://app.example.com",
    "https://APP.example.com",
    "https://app.example.com:443",
    "https://*.example.com",
    "https://app.example.com, https://*.example.com",
    "https://*",
    "https://app-*.example.com",
  ]) {
    expect(() => originList(bad)).toThrow();
  }
});

test("CORS_ORIGINS unset means no CORS; a bad one is reported by name", () => {
  const secret = { JWT_SECRET: "0123456789abcdef0123456789abcdef" };
  expect(loadConfig(secret).corsOrigins).toBeUndefined();
  expect(() => loadConfig({ ...secret, CORS_ORIGINS: "https://a.example/x" })).toThrow(/CORS_ORIGINS/);
  expect(() => loadConfig({ ...secret, CORS_ORIGINS: "https://*.example.com" })).toThrow(
    /CORS_ORIGINS.*no wildcards/,
  );
});
