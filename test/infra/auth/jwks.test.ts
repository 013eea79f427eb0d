import { expect, test } from "bun:test";
import { exportJWK, type FlattenedJWSInput, generateKeyPair, type JWK } from "jose";
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

/** An ES256 public key as an identity provider publishes it. */
async function publishedKey(kid: string): Promise<JWK> {
  const { publicKey } = await generateKeyPair("ES256");
  return { ...(await exportJWK(publicKey)), kid, alg: "ES256", use: "sig" };
}

/** A JWKS endpoint whose document the test swaps. */
function documentServer(first: unknown) {
  let document = first;
  const server = Bun.serve({ port: 0, fetch: () => Response.json(document) });
  return {
    url: server.url.href,
    serve(next: unknown) {
      document = next;
    },
    stop: () => server.stop(true),
  };
}

async function lookupError(keys: JwksKeys, kid: string): Promise<unknown> {
  return keys.getKey({ alg: "ES256", kid }, NO_TOKEN).then(
    () => "found",
    (error: unknown) => (error as { code?: unknown }).code,
  );
}

test("a fetched document with no usable key (empty, keys of no known kind, keys that cannot be imported) does not replace the set: its keys serve on, a token that needed the fetch gets a 503", async () => {
  const good = await publishedKey("k1");
  const { privateKey } = await generateKeyPair("ES256", { extractable: true });
  const broken: Array<[string, unknown]> = [
    ["no keys", { keys: [] }],
    ["a key of no known kind", { keys: [{}] }],
    ["the same kid with bad material", { keys: [{ ...good, x: "AAAA" }] }],
    ["a private key", { keys: [{ ...(await exportJWK(privateKey)), kid: "k2", alg: "ES256" }] }],
  ];
  const endpoint = documentServer({ keys: [good] });
  const failures: string[] = [];
  const keys = new JwksKeys({
    url: endpoint.url,
    minRefetchIntervalMs: 20,
    maxAgeMs: 60_000,
    timeoutMs: 1000,
    onFetchFailure: (reason) => failures.push(reason),
  });
  try {
    expect(await lookupError(keys, "k1")).toBe("found");
    for (const [name, document] of broken) {
      endpoint.serve(document);
      failures.length = 0;
      await Bun.sleep(30);
      // An unknown kid makes the gateway fetch the broken document.
      expect([name, await lookupError(keys, "k9")]).toEqual([name, "unavailable"]);
      expect([name, failures]).toEqual([name, ["JWKS endpoint answered a key set with no usable key"]]);
      expect([name, await lookupError(keys, "k1")]).toEqual([name, "found"]);
    }
  } finally {
    endpoint.stop();
  }
});

test("a fetched document with usable and broken keys replaces the set, but a kid it breaks keeps its last good copy, and a kid published only broken gets a 503, not a 401", async () => {
  const [k1, k2, k3] = await Promise.all([publishedKey("k1"), publishedKey("k2"), publishedKey("k3")]);
  const endpoint = documentServer({ keys: [k1] });
  const unusable: string[][] = [];
  const keys = new JwksKeys({
    url: endpoint.url,
    minRefetchIntervalMs: 20,
    maxAgeMs: 60_000,
    timeoutMs: 1000,
    onUnusableKeys: (kids) => unusable.push(kids),
  });
  try {
    expect(await lookupError(keys, "k1")).toBe("found");
    endpoint.serve({ keys: [{ ...k1, x: "AAAA" }, k2, { ...k3, y: "AAAA" }] });
    await Bun.sleep(30);
    // k2 is new: its lookup fetches the document.
    expect(await lookupError(keys, "k2")).toBe("found");
    expect(unusable).toEqual([["k1", "k3"]]);
    // k1's last good copy, not the broken one.
    const k1Key = await exportJWK(await keys.getKey({ alg: "ES256", kid: "k1" }, NO_TOKEN));
    expect([k1Key.x, k1Key.y]).toEqual([k1.x, k1.y]);
    // k3 was never usable: the set is at fault, so 503 (after one more fetch, in case it was mended).
    expect(await lookupError(keys, "k3")).toBe("unavailable");
    // A kid the set does not publish at all is still the token's fault.
    await Bun.sleep(30);
    expect(await lookupError(keys, "k4")).toBe("ERR_JWKS_NO_MATCHING_KEY");
    // The identity provider mends k3: accepted at the next fetch.
    endpoint.serve({ keys: [k1, k2, k3] });
    await Bun.sleep(30);
    expect(await lookupError(keys, "k3")).toBe("found");
  } finally {
    endpoint.stop();
  }
});
