import { GatewayError } from "../errors/errors.ts";

/** Who a verified token speaks for. */
export interface Principal {
  subject: string;
  tenant: string;
  scopes: ReadonlySet<string>;
  /** Channel patterns the token is limited to ("orders", "orders.*", "*"); undefined = every channel of the tenant. */
  channels: readonly string[] | undefined;
  /** Epoch ms from `exp`. */
  expiresAt: number;
}

export function requireScope(principal: Principal, scope: string): void {
  if (!principal.scopes.has(scope)) throw new GatewayError("forbidden", `token lacks scope ${scope}`);
}

const compiledPatterns = new WeakMap<Principal, RegExp[]>();

function compile(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*");
  return new RegExp(`^${escaped}$`);
}

/** Whether the token may use `channel`; patterns use `*` as a wildcard and are compiled once per principal. */
export function channelAllowed(principal: Principal, channel: string): boolean {
  if (principal.channels === undefined) return true;
  let patterns = compiledPatterns.get(principal);
  if (!patterns) {
    patterns = principal.channels.map(compile);
    compiledPatterns.set(principal, patterns);
  }
  return patterns.some((pattern) => pattern.test(channel));
}
