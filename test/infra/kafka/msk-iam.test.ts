import { describe, expect, test } from "bun:test";
import { generateAuthTokenFromCredentialsProvider } from "aws-msk-iam-sasl-signer-js";
import { loadConfig } from "../../../src/config/config.ts";
import { kafkaConnectionOptions } from "../../../src/infra/kafka/client-options.ts";
import { mskTokenProvider } from "../../../src/infra/kafka/msk-iam.ts";

const STATIC_CREDENTIALS = async () => ({
  accessKeyId: "AKIDEXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
});

const signWithStaticCredentials = () =>
  generateAuthTokenFromCredentialsProvider({
    region: "eu-west-1",
    awsCredentialsProvider: STATIC_CREDENTIALS,
  });

describe("MSK IAM OAUTHBEARER token", () => {
  test("is a presigned kafka-cluster:Connect URL for the region, signed with the credentials", async () => {
    const token = await mskTokenProvider(signWithStaticCredentials)();
    const url = new URL(Buffer.from(token, "base64url").toString("utf8"));
    expect(url.host).toBe("kafka.eu-west-1.amazonaws.com");
    expect(url.searchParams.get("Action")).toBe("kafka-cluster:Connect");
    expect(url.searchParams.get("X-Amz-Algorithm")).toBe("AWS4-HMAC-SHA256");
    expect(url.searchParams.get("X-Amz-Credential")).toMatch(
      /^AKIDEXAMPLE\/\d{8}\/eu-west-1\/kafka-cluster\/aws4_request$/,
    );
    expect(url.searchParams.get("X-Amz-Signature")).toMatch(/^[0-9a-f]{64}$/);
    expect(Number(url.searchParams.get("X-Amz-Expires"))).toBe(900);
    expect(url.searchParams.get("X-Amz-Date")).toMatch(/^\d{8}T\d{6}Z$/);
  });

  test("is reused until close to expiry, then signed again", async () => {
    let clock = 1_000_000;
    let signed = 0;
    const provider = mskTokenProvider(
      async () => {
        signed++;
        return { token: `t${signed}`, expiryTime: clock + 15 * 60_000 };
      },
      5 * 60_000,
      () => clock,
    );
    expect(await provider()).toBe("t1");
    clock += 9 * 60_000;
    expect(await provider()).toBe("t1");
    clock += 2 * 60_000;
    expect(await provider()).toBe("t2");
    expect(signed).toBe(2);
  });

  test("a signing that fails before the cached token expires falls back to it; after, the failure is the answer", async () => {
    let clock = 1_000_000;
    let failing = false;
    const provider = mskTokenProvider(
      async () => {
        if (failing) throw new Error("credentials endpoint unreachable");
        return { token: "t1", expiryTime: clock + 15 * 60_000 };
      },
      5 * 60_000,
      () => clock,
    );
    expect(await provider()).toBe("t1");
    failing = true;
    clock += 11 * 60_000;
    expect(await provider()).toBe("t1");
    clock += 4 * 60_000;
    await expect(provider()).rejects.toThrow("credentials endpoint unreachable");
  });

  test("aws-msk-iam config gives an OAUTHBEARER token provider over TLS", async () => {
    const config = loadConfig({
      JWT_SECRET: "0123456789abcdef0123456789abcdef",
      KAFKA_BROKERS: "b-1.msk:9098",
      KAFKA_SASL_MECHANISM: "aws-msk-iam",
      AWS_REGION: "eu-west-1",
    });
    const options = kafkaConnectionOptions(config.kafka, signWithStaticCredentials);
    expect(options.tls).toEqual({});
    expect(options.sasl?.mechanism).toBe("OAUTHBEARER");
    const token = await (options.sasl as { token: () => Promise<string> }).token();
    expect(Buffer.from(token, "base64url").toString("utf8")).toContain("kafka-cluster%3AConnect");
  });
});
