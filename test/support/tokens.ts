import { signDevToken } from "../../src/infra/auth/dev-token.ts";

export const TEST_SECRET = "e2e-test-secret-0123456789-abcdefghijklmnop";

export function token(
  tenant: string,
  scopes: string[],
  extra: { channels?: string[]; ttlSec?: number; sub?: string } = {},
) {
  return signDevToken({ secret: TEST_SECRET, tenant, scopes, ...extra });
}
