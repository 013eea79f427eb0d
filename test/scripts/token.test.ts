// scripts/token.ts, the README's `bun run --silent token -- …`, run as a user runs it.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { DEV_JWT_SECRET } from "../../src/config/config.ts";
import { createAuthenticator } from "../../src/infra/auth/authenticator.ts";

const SCRIPT = join(import.meta.dir, "../../scripts/token.ts");
const SECRET = "token-script-test-secret-0123456789abcdef";

/** Runs the script with these arguments and only these gateway settings in its environment. */
async function run(args: string[], env: Record<string, string> = {}) {
  const { JWT_SECRET: _s, JWT_ISSUER: _i, JWT_AUDIENCE: _a, ...rest } = process.env;
  const child = Bun.spawn(["bun", SCRIPT, ...args], {
    env: { ...rest, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, stdout, stderr] = await Promise.all([
    child.exited,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  return { code, stdout: stdout.trim(), stderr };
}

test("--help lists every option and exits 0; an unknown option is a one-line usage error, exit 2, no stack", async () => {
  const help = await run(["--help"]);
  expect(help.code).toBe(0);
  for (const option of [
    "--tenant",
    "--scope",
    "--sub",
    "--ttl",
    "--channels",
    "--secret",
    "--issuer",
    "--audience",
  ])
    expect(help.stdout).toContain(option);
  const wrong = await run(["--tennant", "acme"]);
  expect(wrong.code).toBe(2);
  expect(wrong.stderr.split("\n")[0]).toBe("Unknown option '--tennant'");
  expect(wrong.stderr).toContain("usage: bun run --silent token -- [options]");
  expect(wrong.stderr).not.toContain("    at ");
});

test("a gateway started in the same shell with JWT_SECRET, JWT_ISSUER and JWT_AUDIENCE accepts its tokens", async () => {
  const env = { JWT_SECRET: SECRET, JWT_ISSUER: "https://idp.example.com/", JWT_AUDIENCE: "edge-gateway" };
  const { code, stdout } = await run(["--tenant", "acme", "--scope", "ingest,subscribe"], env);
  expect(code).toBe(0);
  const gateway = createAuthenticator({
    jwtSecret: SECRET,
    jwksUrl: undefined,
    cacheSize: 10,
    issuer: env.JWT_ISSUER,
    audience: env.JWT_AUDIENCE,
  });
  const principal = await gateway.verify(stdout);
  expect([principal.tenant, [...principal.scopes].sort()]).toEqual(["acme", ["ingest", "subscribe"]]);
  // --issuer and --audience override the environment's.
  const other = await run(["--issuer", "https://other.example.com/"], env);
  await expect(gateway.verify(other.stdout)).rejects.toThrow("token issuer not accepted");
});

test('an empty --secret is no secret: `--secret "$JWT_SECRET"` signs with JWT_SECRET, else the dev secret', async () => {
  // docs/load-testing.md's command, in a shell without JWT_SECRET (a gateway in dev mode) and with it.
  const args = ["--secret", "", "--tenant", "loadtest", "--scope", "ingest"];
  const dev = await run(args);
  expect([dev.code, dev.stderr]).toEqual([0, ""]);
  const devGateway = createAuthenticator({
    jwtSecret: DEV_JWT_SECRET,
    jwksUrl: undefined,
    cacheSize: 10,
    issuer: undefined,
    audience: undefined,
  });
  expect((await devGateway.verify(dev.stdout)).tenant).toBe("loadtest");
  const own = await run(["--secret", " ", ...args.slice(2)], { JWT_SECRET: SECRET });
  expect(own.code).toBe(0);
  const gateway = createAuthenticator({
    jwtSecret: SECRET,
    jwksUrl: undefined,
    cacheSize: 10,
    issuer: undefined,
    audience: undefined,
  });
  expect((await gateway.verify(own.stdout)).tenant).toBe("loadtest");
});
