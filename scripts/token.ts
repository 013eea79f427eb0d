import { parseArgs } from "node:util";
import { DEV_JWT_SECRET } from "../src/config/config.ts";
import { signDevToken } from "../src/infra/auth/dev-token.ts";

// Prints a development token, e.g. `bun scripts/token.ts --tenant acme --scope ingest,subscribe`.
// Signed with --secret, else JWT_SECRET, else the gateway's dev secret, so it matches a first run.
const { values } = parseArgs({
  options: {
    tenant: { type: "string", default: "acme" },
    scope: { type: "string", default: "ingest,subscribe,publish" },
    sub: { type: "string", default: "dev" },
    ttl: { type: "string", default: "3600" },
    channels: { type: "string" },
    secret: { type: "string" },
  },
});
const ttlSec = Number(values.ttl);
if (!Number.isSafeInteger(ttlSec) || ttlSec <= 0) {
  console.error("--ttl must be a positive whole number of seconds");
  process.exit(1);
}
const list = (value: string) => value.split(/[ ,]+/).filter((entry) => entry !== "");
const token = await signDevToken({
  secret: values.secret ?? (process.env.JWT_SECRET || DEV_JWT_SECRET),
  tenant: values.tenant,
  scopes: list(values.scope),
  sub: values.sub,
  ttlSec,
  channels: values.channels === undefined ? undefined : list(values.channels),
});
console.log(token);
