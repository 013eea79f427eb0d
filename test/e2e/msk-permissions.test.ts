import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { protocolAPIsById } from "@platformatic/kafka";
import { services } from "../support/kafka.ts";
import { token } from "../support/tokens.ts";
import { publishEvent, RUNTIMES, startGateway } from "./harness.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const RECORDER = join(ROOT, "test/support/record-kafka-apis.mjs");

/**
 * The MSK IAM actions each Kafka API needs (Amazon MSK developer guide, "Semantics of IAM
 * authorization policy actions and resources": each action is the Kafka ACL operation the
 * broker checks for that request). InitProducerId is the idempotent producer's: Kafka 2.8+
 * (KIP-679) lets WRITE on any topic stand in for IDEMPOTENT_WRITE, MSK IAM does not, so
 * WriteData on named topics is not enough.
 */
const MSK_ACTIONS: Record<string, string[]> = {
  ApiVersions: ["Connect"],
  SaslHandshake: ["Connect"],
  SaslAuthenticate: ["Connect"],
  Metadata: ["Connect", "DescribeTopic"],
  CreateTopics: ["CreateTopic"],
  DescribeConfigs: ["DescribeTopicDynamicConfiguration"],
  ListOffsets: ["DescribeTopic"],
  Fetch: ["ReadData"],
  InitProducerId: ["WriteDataIdempotently"],
  Produce: ["WriteData"],
};

/** The `kafka-cluster:` actions docs/deploy.md#msk-iam grants the pod's role. */
function documentedActions(): Set<string> {
  const deployDoc = readFileSync(join(ROOT, "docs/deploy.md"), "utf8");
  const section = /^### MSK IAM\n([\s\S]*?)(?=^#{1,3} )/m.exec(deployDoc)?.[1] ?? "";
  return new Set([...section.matchAll(/`kafka-cluster:(\w+)`/g)].map((match) => match[1] as string));
}

describe.each(RUNTIMES)("MSK IAM permissions on %s", (runtime) => {
  test("docs/deploy.md#msk-iam grants exactly the actions of the Kafka requests the gateway sends", async () => {
    const dir = mkdtempSync(join(tmpdir(), "msk-permissions-"));
    const apisFile = join(dir, "apis");
    const suffix = `${runtime}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
    const gateway = await startGateway(runtime, {
      KAFKA_BROKERS: services().brokers,
      // Missing at start: the gateway creates them (CreateTopics), as it does on a first rollout.
      KAFKA_TOPIC: `msk-events-${suffix}`,
      KAFKA_FANOUT_TOPIC: `msk-fanout-${suffix}`,
      KAFKA_DLQ_TOPIC: `msk-dlq-${suffix}`,
      KAFKA_APIS_FILE: apisFile,
      ...(runtime === "bun"
        ? { BUN_OPTIONS: `--preload ${RECORDER}` }
        : { NODE_OPTIONS: `--import ${RECORDER}` }),
    });
    try {
      // A record acknowledged by Kafka and one dead-lettered, a publish, a read of the fan-out topic.
      const ingest = await fetch(`${gateway.url}/v1/events`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${await token("acme", ["ingest", "publish"])}`,
          "content-type": "application/json",
        },
        body: JSON.stringify([
          { type: "click", channel: "orders", data: { element: "x" } },
          { type: "click", data: {} },
        ]),
      });
      expect(ingest.status).toBe(202);
      await publishEvent(gateway, "orders", { n: 1 });
      const page = await fetch(`${gateway.url}/v1/channels/orders/events?limit=10`, {
        headers: { authorization: `Bearer ${await token("acme", ["subscribe"])}` },
      });
      expect(page.status).toBe(200);
    } finally {
      expect(await gateway.stop("SIGTERM")).toBe(0);
    }
    const apis = readFileSync(apisFile, "utf8")
      .trim()
      .split("\n")
      .map((key) => protocolAPIsById[Number(key)] ?? `api key ${key}`);
    rmSync(dir, { recursive: true, force: true });
    expect(apis).toEqual(expect.arrayContaining(["CreateTopics", "DescribeConfigs", "Fetch", "Produce"]));

    // A request this table does not know needs its MSK action found, added here and in the docs.
    expect(apis.filter((api) => !(api in MSK_ACTIONS))).toEqual([]);
    const needed = new Set(apis.flatMap((api) => MSK_ACTIONS[api] ?? []));
    const documented = documentedActions();
    expect({ missing: [...needed].filter((action) => !documented.has(action)).sort() }).toEqual({
      missing: [],
    });
    // And nothing more: a role holds only what the gateway uses (least privilege).
    expect({ unused: [...documented].filter((action) => !needed.has(action)).sort() }).toEqual({
      unused: [],
    });
  }, 60_000);
});
