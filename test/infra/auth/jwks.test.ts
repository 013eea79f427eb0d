import { expect, test } from "bun:test";
import { exportJWK, type FlattenedJWSInput, generateKeyPair } from "jose";
import { JwksKeys } from "../../../src/infra/auth/jwks.ts";
import { waitUntil } from "../../support/wait.ts";

/** A lookup needs the header alone; jose's signature input is not read for it. */
const NO_TOKEN = { payload: "", signature: "" } as FlattenedJWSInput;

test("a key set past its age whose re-read fails keeps serving: the outage of the identity provider never drops the keys", async () => {
  const { publicKey } = await generateKeyPair("ES256");
  const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" };
  let fetches = 0;
  const server = Bun.serve({
    port: 0,
    fetch: () => {
      fetches++;
      return Response.json({ keys: [jwk] });
    },
  });
  const failures: string[] = [];
  const keys = new JwksKeys({
    url: server.url.href,
    minRefetchIntervalMs: 20,
    maxAgeMs: 100,
    timeoutMs: 1000,
    onFetchFailure: (reason) => failures.push(reason),
  });
  const header = { alg: "ES256", kid: "k1" };
  try {
    expect(await keys.getKey(header, NO_TOKEN)).toBeDefined();
    expect(fetches).toBe(1);
  } finally {
    server.stop(true);
  }
  // Past maxAgeMs with the endpoint gone: the lookup answers from the set it has and re-reads it behind.
  await Bun.sleep(150);
  expect(await keys.getKey(header, NO_TOKEN)).toBeDefined();
  await waitUntil(() => failures.length > 0, "the background re-read to fail");
  expect(failures[0]).toBe("JWKS endpoint unreachable");
  // Every lookup after the failed re-read, again and again past the age, still finds the key.
  for (let round = 0; round < 3; round++) {
    await Bun.sleep(60);
    expect(await keys.getKey(header, NO_TOKEN)).toBeDefined();
  }
  expect(failures.length).toBeGreaterThan(1);
});

test("a key set larger than 256 KiB is refused, declared or streamed without end: the lookup gets a 503 and the failure says why", async () => {
  const chunk = new Uint8Array(64 * 1024).fill(0x20);
  const server = Bun.serve({
    port: 0,
    fetch: (request) => {
      if (new URL(request.url).pathname === "/declared") return new Response(new Uint8Array(300 * 1024));
      // An endless body: only the cap ends the read.
      return new Response(
        new ReadableStream({
          pull(controller) {
            controller.enqueue(chunk);
          },
        }),
      );
    },
  });
  try {
    for (const path of ["/declared", "/endless"]) {
      const failures: string[] = [];
      const keys = new JwksKeys({
        url: new URL(path, server.url).href,
        minRefetchIntervalMs: 20,
        maxAgeMs: 100,
        timeoutMs: 5000,
        onFetchFailure: (reason) => failures.push(reason),
      });
      const refusal = await keys
        .getKey({ alg: "ES256", kid: "k1" }, NO_TOKEN)
        .catch((error: unknown) => error);
      expect(refusal).toMatchObject({ code: "unavailable" });
      expect(failures).toEqual(["JWKS document too large"]);
    }
  } finally {
    server.stop(true);
  }
});
