import { fromNodeProviderChain } from "@aws-sdk/credential-providers";
import { generateAuthTokenFromCredentialsProvider } from "aws-msk-iam-sasl-signer-js";

export interface MskToken {
  token: string;
  expiryTime: number;
}

export type MskTokenSigner = () => Promise<MskToken>;

/** Signs MSK IAM tokens with the default AWS credential chain (env, IRSA/Pod Identity, instance role). */
export function defaultMskSigner(region: string): MskTokenSigner {
  const awsCredentialsProvider = fromNodeProviderChain();
  return () => generateAuthTokenFromCredentialsProvider({ region, awsCredentialsProvider });
}

/**
 * OAUTHBEARER token provider for `aws-msk-iam`. The Kafka client calls it on
 * every (re-)authentication; the cached token is reused until `refreshMarginMs`
 * before its expiry, so a connection never authenticates with a token about to
 * lapse, and long-lived processes keep working past the 15-minute token life.
 * A signing that fails within the margin (credentials endpoint briefly away)
 * falls back to the cached token while it is still valid: the margin is there
 * to refresh early, not to fail early.
 */
export function mskTokenProvider(sign: MskTokenSigner, refreshMarginMs = 5 * 60_000, now = Date.now) {
  let cached: MskToken | undefined;
  let pending: Promise<MskToken> | undefined;
  return async (): Promise<string> => {
    if (cached && cached.expiryTime - refreshMarginMs > now()) return cached.token;
    pending ??= sign().finally(() => {
      pending = undefined;
    });
    try {
      cached = await pending;
    } catch (error) {
      if (cached && cached.expiryTime > now()) return cached.token;
      throw error;
    }
    return cached.token;
  };
}
