import { expect, test } from "bun:test";
import { GatewayError } from "../../src/domain/errors.ts";
import type { Principal } from "../../src/domain/principal.ts";
import { authorizedCaller } from "../../src/http/caller.ts";
import { fakeRequest } from "../support/http.ts";

const principal: Principal = {
  subject: "dev",
  tenant: "acme",
  scopes: new Set(["ingest"]),
  channels: undefined,
  expiresAt: Date.now() + 60_000,
};

test("the IP budget is checked before the token: a client over it costs no signature check", async () => {
  let verified = 0;
  const checks = {
    admission: { request: async () => Promise.reject(new GatewayError("rate_limited", "slow down")) },
    authenticate: async () => {
      verified++;
      return principal;
    },
  };
  await expect(authorizedCaller(fakeRequest("POST", "/v1/events"), "ingest", checks)).rejects.toMatchObject({
    code: "rate_limited",
  });
  expect(verified).toBe(0);
});

test("a token without the route's scope is a 403; with it, the principal", async () => {
  const checks = { admission: { request: async () => {} }, authenticate: async () => principal };
  const request = fakeRequest("POST", "/v1/publish");
  await expect(authorizedCaller(request, "publish", checks)).rejects.toMatchObject({ code: "forbidden" });
  expect(await authorizedCaller(request, "ingest", checks)).toBe(principal);
});
