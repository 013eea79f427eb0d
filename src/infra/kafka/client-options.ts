import type { SASLOptions } from "@platformatic/kafka";
import type { Config } from "../../config/config.ts";
import { defaultMskSigner, type MskTokenSigner, mskTokenProvider } from "./msk-iam.ts";

/** Connection settings shared by the producer and the fan-out consumer. */
export interface KafkaConnectionOptions {
  clientId: string;
  bootstrapBrokers: string[];
  sasl?: SASLOptions;
  tls?: Record<string, never>;
  connectTimeout: number;
  requestTimeout: number;
  retries: number;
  retryDelay: number;
}

const MECHANISM_NAMES = {
  plain: "PLAIN",
  "scram-sha-256": "SCRAM-SHA-256",
  "scram-sha-512": "SCRAM-SHA-512",
} as const;

export function kafkaConnectionOptions(
  kafka: Config["kafka"],
  mskSigner: MskTokenSigner | undefined = undefined,
): KafkaConnectionOptions {
  if (!kafka.brokers) throw new Error("KAFKA_BROKERS is not set");
  const options: KafkaConnectionOptions = {
    clientId: kafka.clientId,
    bootstrapBrokers: kafka.brokers,
    connectTimeout: 5000,
    requestTimeout: 30_000,
    // The delivery queue owns retries (with backoff and health reporting); the client fails fast.
    retries: 1,
    retryDelay: 250,
  };
  if (kafka.tls) options.tls = {};
  const mechanism = kafka.saslMechanism;
  if (mechanism === "aws-msk-iam") {
    const region = kafka.awsRegion;
    if (!region) throw new Error("AWS_REGION is required with KAFKA_SASL_MECHANISM=aws-msk-iam");
    options.sasl = {
      mechanism: "OAUTHBEARER",
      token: mskTokenProvider(mskSigner ?? defaultMskSigner(region)),
    };
  } else if (mechanism !== "none") {
    options.sasl = {
      mechanism: MECHANISM_NAMES[mechanism],
      username: kafka.saslUsername as string,
      password: kafka.saslPassword as string,
    };
  }
  return options;
}
