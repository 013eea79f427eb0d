import { parseArgs } from "node:util";
import { DEV_JWT_SECRET } from "../src/config/config.ts";
import { signDevToken } from "../src/infra/auth/dev-token.ts";

// Prints a development token, e.g. `bun scripts/token.ts --tenant acme --scope ingest,subscribe`.
// Signed with --secret, else JWT_SECRET, else the gateway's dev secret, and given the gateway's
// JWT_ISSUER and JWT_AUDIENCE when they are set, so it matches a gateway started in the same shell.
const USAGE = `Prints a token for the gateway (HS256).
usage: bun run --silent token -- [options]
  --tenant <id>        the tenant claim (default acme)
  --scope <list>       scopes, comma- or space-separated: ingest, subscribe, publish (default all three)
  --sub <subject>      the subject (default dev)
  --ttl <seconds>      lifetime (default 3600)
  --channels <list>    channel patterns the token is limited to (default: no limit)
  --secret <secret>    signing secret (default JWT_SECRET, else the dev secret of DEV_MODE)
  --issuer <iss>       the iss claim (default JWT_ISSUER, else none)
  --audience <aud>     the aud claim (default JWT_AUDIENCE, else none)
  --help               this text`;

function parse() {
  return parseArgs({
    options: {
      tenant: { type: "string", default: "acme" },
      scope: { type: "string", default: "ingest,subscribe,publish" },
      sub: { type: "string", default: "dev" },
      ttl: { type: "string", default: "3600" },
      channels: { type: "string" },
      secret: { type: "string" },
      issuer: { type: "string" },
      audience: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
}

// A wrong option is a usage error said in one line, not parseArgs' stack trace.
let values: ReturnType<typeof parse>["values"];
try {
  values = parse().values;
} catch (error) {
  console.error(`${(error as Error).message}\n${USAGE}`);
  process.exit(2);
}
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

const ttlSec = Number(values.ttl);
if (!Number.isSafeInteger(ttlSec) || ttlSec <= 0) {
  console.error("--ttl must be a positive whole number of seconds");
  process.exit(1);
}
const list = (value: string) => value.split(/[ ,]+/).filter((entry) => entry !== "");
// An empty or blank secret is no secret, as the gateway reads JWT_SECRET: `--secret "$JWT_SECRET"` in a
// shell without it (docs/load-testing.md) signs with the dev secret instead of failing in jose.
const given = (value: string | undefined) => (value === undefined || value.trim() === "" ? undefined : value);
const token = await signDevToken({
  secret: given(values.secret) ?? given(process.env.JWT_SECRET) ?? DEV_JWT_SECRET,
  tenant: values.tenant,
  scopes: list(values.scope),
  sub: values.sub,
  ttlSec,
  channels: values.channels === undefined ? undefined : list(values.channels),
  issuer: values.issuer ?? (process.env.JWT_ISSUER || undefined),
  audience: values.audience ?? (process.env.JWT_AUDIENCE || undefined),
});
console.log(token);
