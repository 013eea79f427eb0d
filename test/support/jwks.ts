import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";

/** An identity provider's signing key: its public JWK and tokens signed with it (ES256). */
export interface SigningKey {
  jwk: JWK;
  sign(claims: { tenant: string; scope: string; ttlSec?: number; sub?: string }): Promise<string>;
}

export async function signingKey(kid: string): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair("ES256");
  return {
    jwk: { ...(await exportJWK(publicKey)), kid, alg: "ES256", use: "sig" },
    sign: ({ tenant, scope, ttlSec = 3600, sub = "e2e" }) =>
      new SignJWT({ tenant, scope })
        .setProtectedHeader({ alg: "ES256", kid })
        .setSubject(sub)
        .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSec)
        .sign(privateKey),
  };
}

/**
 * A JWKS endpoint on a fixed loopback port, which `down()` stops listening
 * and `up(keys)` starts again (publishing those keys): an identity provider
 * the test can take away.
 */
export class JwksServer {
  private server: ReturnType<typeof Bun.serve> | undefined;
  private constructor(readonly port: number) {}

  static async start(keys: JWK[]): Promise<JwksServer> {
    const probe = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
    const port = probe.port as number;
    probe.stop(true);
    const jwks = new JwksServer(port);
    jwks.up(keys);
    return jwks;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/.well-known/jwks.json`;
  }

  up(keys: JWK[]): void {
    this.down();
    this.server = Bun.serve({
      port: this.port,
      hostname: "127.0.0.1",
      fetch: () => Response.json({ keys }),
    });
  }

  down(): void {
    this.server?.stop(true);
    this.server = undefined;
  }
}
