import { describe, expect, setSystemTime, spyOn, test } from "bun:test";
import { exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT, UnsecuredJWT } from "jose";
import { GatewayError } from "../../../src/domain/errors.ts";
import { createAuthenticator } from "../../../src/infra/auth/authenticator.ts";
import { signDevToken } from "../../../src/infra/auth/dev-token.ts";
import type { Authenticator } from "../../../src/ports/auth.ts";

const SECRET = "authenticator-test-secret-0123456789";
const secretKey = new TextEncoder().encode(SECRET);
const inOneHour = () => Math.floor(Date.now() / 1000) + 3600;

function secretAuthenticator(
  options: { cacheSize?: number; now?: () => number; clockToleranceSec?: number } = {},
) {
  return createAuthenticator({ jwtSecret: SECRET, jwksUrl: undefined, cacheSize: 100, ...options });
}

/** An HS256 token with exactly these claims (no defaults), for claim-validation cases. */
function signClaims(claims: JWTPayload, alg = "HS256"): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg }).sign(secretKey);
}

async function expectUnauthorized(authenticator: Authenticator, token: string, reason: string) {
  let thrown: unknown;
  try {
    await authenticator.verify(token);
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(GatewayError);
  const error = thrown as GatewayError;
  expect(error.code).toBe("unauthorized");
  expect(error.status).toBe(401);
  expect(error.message).toBe(reason);
}

/** Counts signature checks: jose verifies every JWS through WebCrypto. */
function countSignatureChecks() {
  return spyOn(crypto.subtle, "verify");
}

interface SigningKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  jwk: JWK;
}

async function signingKey(kid: string, alg: "ES256" | "RS256"): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg);
  return { kid, alg, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: "sig" } };
}

function signWith(key: SigningKey, claims: JWTPayload = {}): Promise<string> {
  return new SignJWT({ tenant: "acme", scope: "subscribe", ...claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid })
    .setSubject("svc")
    .setExpirationTime(inOneHour())
    .sign(key.privateKey);
}

/** A real JWKS endpoint on a free port; its key set can be swapped to simulate rotation. */
async function withJwksServer(
  keys: JWK[],
  run: (jwks: { url: string; fetches: () => number; serve: (keys: JWK[]) => void }) => Promise<void>,
) {
  let served = keys;
  let fetches = 0;
  const server = Bun.serve({
    port: 0,
    fetch() {
      fetches++;
      return Response.json({ keys: served });
    },
  });
  try {
    await run({
      url: new URL("/.well-known/jwks.json", server.url).href,
      fetches: () => fetches,
      serve: (next) => {
        served = next;
      },
    });
  } finally {
    server.stop(true);
  }
}

describe("HS256 tokens", () => {
  test("a valid token yields its principal", async () => {
    const token = await signDevToken({
      secret: SECRET,
      tenant: "acme",
      scopes: ["ingest", "subscribe"],
      sub: "alice",
      ttlSec: 600,
      channels: ["orders", "orders.*"],
    });
    const before = Date.now();
    const principal = await secretAuthenticator().verify(token);
    expect(principal.subject).toBe("alice");
    expect(principal.tenant).toBe("acme");
    expect([...principal.scopes].sort()).toEqual(["ingest", "subscribe"]);
    expect(principal.channels).toEqual(["orders", "orders.*"]);
    expect(principal.expiresAt % 1000).toBe(0);
    expect(principal.expiresAt).toBeGreaterThan(before + 598_000);
    expect(principal.expiresAt).toBeLessThanOrEqual(before + 601_000);
  });

  test("no channels claim means every channel", async () => {
    const token = await signDevToken({ secret: SECRET, tenant: "acme", scopes: ["ingest"] });
    expect((await secretAuthenticator().verify(token)).channels).toBeUndefined();
  });

  test("an expired token is refused", async () => {
    const token = await signDevToken({ secret: SECRET, tenant: "acme", scopes: ["ingest"], ttlSec: -60 });
    await expectUnauthorized(secretAuthenticator(), token, "token expired");
  });

  test("exp is allowed the clock tolerance, 5 s by default", async () => {
    const token = await signDevToken({ secret: SECRET, tenant: "acme", scopes: ["ingest"], ttlSec: 60 });
    const threeSecondsPastExp = () => Date.now() + 63_000;
    expect((await secretAuthenticator({ now: threeSecondsPastExp }).verify(token)).tenant).toBe("acme");
    await expectUnauthorized(
      secretAuthenticator({ now: threeSecondsPastExp, clockToleranceSec: 0 }),
      token,
      "token expired",
    );
  });

  test("a token signed with another secret is refused", async () => {
    const token = await signDevToken({ secret: "some-other-secret", tenant: "acme", scopes: ["ingest"] });
    await expectUnauthorized(secretAuthenticator(), token, "bad token signature");
  });

  test("a token whose claims were changed after signing is refused", async () => {
    const token = await signDevToken({ secret: SECRET, tenant: "acme", scopes: ["ingest"] });
    const [header, payload, signature] = token.split(".") as [string, string, string];
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString());
    const forged = Buffer.from(JSON.stringify({ ...claims, tenant: "victim" })).toString("base64url");
    await expectUnauthorized(
      secretAuthenticator(),
      `${header}.${forged}.${signature}`,
      "bad token signature",
    );
  });

  test("a token not valid yet is refused", async () => {
    const token = await signClaims({ sub: "a", tenant: "acme", exp: inOneHour(), nbf: inOneHour() - 60 });
    await expectUnauthorized(secretAuthenticator(), token, "token not valid yet or has malformed claims");
  });

  test("garbage is a malformed token, and the reason never repeats it", async () => {
    for (const token of ["not-a-jwt", "a.b.c", ""]) {
      await expectUnauthorized(secretAuthenticator(), token, "malformed token");
    }
  });

  test("only HS256 is accepted for the secret", async () => {
    const authenticator = secretAuthenticator();
    const unsigned = new UnsecuredJWT({ sub: "a", tenant: "acme" }).setExpirationTime(inOneHour()).encode();
    await expectUnauthorized(authenticator, unsigned, "unsupported token algorithm");
    const hs384 = await signClaims({ sub: "a", tenant: "acme", exp: inOneHour() }, "HS384");
    await expectUnauthorized(authenticator, hs384, "unsupported token algorithm");
  });
});

describe("claims", () => {
  const valid = () => ({ sub: "alice", tenant: "acme", scope: "ingest", exp: inOneHour() });

  test("tenant is required and must be a plain name", async () => {
    const { tenant: _, ...withoutTenant } = valid();
    await expectUnauthorized(
      secretAuthenticator(),
      await signClaims(withoutTenant),
      "token has no valid tenant",
    );
    for (const tenant of ["", "a/b", "x".repeat(65), 42]) {
      const token = await signClaims({ ...valid(), tenant });
      await expectUnauthorized(secretAuthenticator(), token, "token has no valid tenant");
    }
    expect(
      (await secretAuthenticator().verify(await signClaims({ ...valid(), tenant: "a-b_c.9" }))).tenant,
    ).toBe("a-b_c.9");
  });

  test("sub and exp are required", async () => {
    const { sub: _sub, ...withoutSub } = valid();
    await expectUnauthorized(secretAuthenticator(), await signClaims(withoutSub), "token has no sub");
    const { exp: _exp, ...withoutExp } = valid();
    await expectUnauthorized(secretAuthenticator(), await signClaims(withoutExp), "token has no exp");
  });

  test("scope is a space-separated string", async () => {
    const token = await signClaims({ ...valid(), scope: " ingest  subscribe\tpublish " });
    const { scopes } = await secretAuthenticator().verify(token);
    expect([...scopes].sort()).toEqual(["ingest", "publish", "subscribe"]);
  });

  test("scope may also be a list of strings", async () => {
    const token = await signClaims({ ...valid(), scope: ["ingest", "subscribe"] });
    expect([...(await secretAuthenticator().verify(token)).scopes].sort()).toEqual(["ingest", "subscribe"]);
  });

  test("no scope claim grants no scope", async () => {
    const { scope: _, ...withoutScope } = valid();
    expect((await secretAuthenticator().verify(await signClaims(withoutScope))).scopes.size).toBe(0);
  });

  test("a scope of another shape is refused", async () => {
    for (const scope of [7, ["ingest", 7], { ingest: true }]) {
      const token = await signClaims({ ...valid(), scope });
      await expectUnauthorized(
        secretAuthenticator(),
        token,
        "token scope must be a string or a list of strings",
      );
    }
  });

  test("channels must be a list of channel patterns", async () => {
    for (const channels of ["orders", ["orders", 1], ["*.orders"], [""]]) {
      const token = await signClaims({ ...valid(), channels });
      await expectUnauthorized(
        secretAuthenticator(),
        token,
        "token channels must be a list of channel patterns",
      );
    }
  });
});

describe("verified-token cache", () => {
  test("a cache hit costs no signature check", async () => {
    const token = await signDevToken({ secret: SECRET, tenant: "acme", scopes: ["ingest"] });
    const checks = countSignatureChecks();
    try {
      const cached = secretAuthenticator({ cacheSize: 10 });
      const first = await cached.verify(token);
      expect(await cached.verify(token)).toBe(first);
      expect(checks).toHaveBeenCalledTimes(1);

      const uncached = secretAuthenticator({ cacheSize: 0 });
      const again = await uncached.verify(token);
      expect(await uncached.verify(token)).not.toBe(again);
      expect(checks).toHaveBeenCalledTimes(3);
    } finally {
      checks.mockRestore();
    }
  });

  test("a cached principal is refused once now passes exp and the tolerance", async () => {
    let clock = Date.now();
    const authenticator = secretAuthenticator({ now: () => clock });
    const token = await signDevToken({ secret: SECRET, tenant: "acme", scopes: ["ingest"], ttlSec: 60 });
    const principal = await authenticator.verify(token);
    expect(await authenticator.verify(token)).toBe(principal);
    clock = principal.expiresAt + 6000;
    await expectUnauthorized(authenticator, token, "token expired");
  });

  test("past exp, the cache steps aside and jose decides with the clock tolerance", async () => {
    let clock = Date.now();
    const authenticator = secretAuthenticator({ now: () => clock });
    const token = await signDevToken({ secret: SECRET, tenant: "acme", scopes: ["ingest"], ttlSec: 60 });
    const principal = await authenticator.verify(token);
    clock = principal.expiresAt + 2000;
    const checks = countSignatureChecks();
    try {
      expect(await authenticator.verify(token)).not.toBe(principal);
      await authenticator.verify(token);
      expect(checks).toHaveBeenCalledTimes(2);
    } finally {
      checks.mockRestore();
    }
  });

  test("the cache is bounded: the least recently used token goes first", async () => {
    const [tokenA, tokenB, tokenC] = await Promise.all(
      ["a", "b", "c"].map((tenant) => signDevToken({ secret: SECRET, tenant, scopes: ["ingest"] })),
    );
    const checks = countSignatureChecks();
    try {
      const roomForTwo = secretAuthenticator({ cacheSize: 2 });
      // Reading A makes B the least recently used, so C pushes out B and A is still a hit.
      for (const token of [tokenA, tokenB, tokenA, tokenC, tokenA]) await roomForTwo.verify(token as string);
      expect(checks).toHaveBeenCalledTimes(3);
      await roomForTwo.verify(tokenB as string);
      expect(checks).toHaveBeenCalledTimes(4);
    } finally {
      checks.mockRestore();
    }
  });

  test("a token accepted only thanks to the clock tolerance takes no cache slot", async () => {
    let clock = Date.now();
    const authenticator = secretAuthenticator({ cacheSize: 1, now: () => clock });
    const hot = await signDevToken({ secret: SECRET, tenant: "hot", scopes: ["ingest"], ttlSec: 3600 });
    const expiring = await signDevToken({ secret: SECRET, tenant: "old", scopes: ["ingest"], ttlSec: 60 });
    const hotPrincipal = await authenticator.verify(hot);
    clock += 62_000;
    expect((await authenticator.verify(expiring)).tenant).toBe("old");
    expect(await authenticator.verify(hot)).toBe(hotPrincipal);
  });
});

describe("JWKS tokens", () => {
  test("a token signed by a key of the JWKS is verified", async () => {
    const key = await signingKey("es-1", "ES256");
    await withJwksServer([key.jwk], async (jwks) => {
      const authenticator = createAuthenticator({ jwtSecret: undefined, jwksUrl: jwks.url, cacheSize: 0 });
      const principal = await authenticator.verify(await signWith(key, { channels: ["orders.*"] }));
      expect(principal.subject).toBe("svc");
      expect(principal.tenant).toBe("acme");
      expect(principal.scopes.has("subscribe")).toBe(true);
      expect(principal.channels).toEqual(["orders.*"]);
      // jose keeps the key set: the second token needs no second fetch.
      await authenticator.verify(await signWith(key, { tenant: "other" }));
      expect(jwks.fetches()).toBe(1);
    });
  });

  test("a token signed by a key outside the JWKS with a known kid is refused", async () => {
    const published = await signingKey("es-1", "ES256");
    const impostor = await signingKey("es-1", "ES256");
    await withJwksServer([published.jwk], async (jwks) => {
      const authenticator = createAuthenticator({ jwtSecret: undefined, jwksUrl: jwks.url, cacheSize: 0 });
      await expectUnauthorized(authenticator, await signWith(impostor), "bad token signature");
    });
  });

  test("with a secret and a JWKS, the token's alg picks the key source", async () => {
    const key = await signingKey("rs-1", "RS256");
    await withJwksServer([key.jwk], async (jwks) => {
      const both = createAuthenticator({ jwtSecret: SECRET, jwksUrl: jwks.url, cacheSize: 0 });
      expect((await both.verify(await signWith(key))).tenant).toBe("acme");
      const hs256 = await signDevToken({ secret: SECRET, tenant: "hs", scopes: ["ingest"] });
      expect((await both.verify(hs256)).tenant).toBe("hs");
      const hs256WithKid = await new SignJWT({ sub: "a", tenant: "kid", exp: inOneHour() })
        .setProtectedHeader({ alg: "HS256", kid: "rs-1" })
        .sign(secretKey);
      expect((await both.verify(hs256WithKid)).tenant).toBe("kid");
    });
  });

  test("without a secret, HS256 tokens are refused; without a JWKS, asymmetric ones are", async () => {
    const key = await signingKey("es-1", "ES256");
    await withJwksServer([key.jwk], async (jwks) => {
      const jwksOnly = createAuthenticator({ jwtSecret: undefined, jwksUrl: jwks.url, cacheSize: 0 });
      const hs256 = await signDevToken({ secret: SECRET, tenant: "acme", scopes: ["ingest"] });
      await expectUnauthorized(jwksOnly, hs256, "unsupported token algorithm");
      await expectUnauthorized(secretAuthenticator(), await signWith(key), "unsupported token algorithm");
    });
  });

  test("key rotation: a new kid is fetched once the refetch cooldown has passed", async () => {
    const oldKey = await signingKey("es-old", "ES256");
    const newKey = await signingKey("rs-new", "RS256");
    await withJwksServer([oldKey.jwk], async (jwks) => {
      const authenticator = createAuthenticator({ jwtSecret: undefined, jwksUrl: jwks.url, cacheSize: 100 });
      const oldToken = await signWith(oldKey);
      const cachedPrincipal = await authenticator.verify(oldToken);
      expect(jwks.fetches()).toBe(1);

      jwks.serve([newKey.jwk]);
      const newToken = await signWith(newKey);
      // jose refetches on an unknown kid at most every 30 s, so kid floods cannot hammer the JWKS endpoint.
      await expectUnauthorized(authenticator, newToken, "unknown token signing key");
      expect(jwks.fetches()).toBe(1);
      try {
        setSystemTime(new Date(Date.now() + 31_000));
        expect((await authenticator.verify(newToken)).subject).toBe("svc");
        expect(jwks.fetches()).toBe(2);
        // The retired key signs nothing new; a principal already verified stays cached until its exp.
        await expectUnauthorized(authenticator, await signWith(oldKey), "unknown token signing key");
        expect(await authenticator.verify(oldToken)).toBe(cachedPrincipal);
      } finally {
        setSystemTime();
      }
    });
  });

  test("an unusable JWKS endpoint refuses tokens without naming them", async () => {
    const key = await signingKey("es-1", "ES256");
    const server = Bun.serve({ port: 0, fetch: () => new Response("down", { status: 503 }) });
    try {
      const authenticator = createAuthenticator({
        jwtSecret: undefined,
        jwksUrl: server.url.href,
        cacheSize: 0,
      });
      await expectUnauthorized(authenticator, await signWith(key), "token signing keys unavailable");
    } finally {
      server.stop(true);
    }
  });
});
