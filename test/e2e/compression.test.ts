import { describe, expect, test } from "bun:test";
import { compressionsAlgorithms } from "@platformatic/kafka";
import { COMPRESSIONS } from "../../src/config/config.ts";
import { createTopic, readWithKcat, services, storedCompression } from "../support/kafka.ts";
import { token } from "../support/tokens.ts";
import { RUNTIMES, type Runtime, runUntilExit, startGateway } from "./harness.ts";

/** Whether the gateway's zlib has zstd there: Bun and Node >= 22.15 do, Node 20 does not. */
function runtimeHasZstd(runtime: Runtime): boolean {
  if (runtime !== "node") return true;
  const probe = Bun.spawnSync(["node", "-p", "typeof require('node:zlib').zstdCompressSync"]);
  return probe.stdout.toString().trim() === "function";
}

const RECORDS = [
  { type: "click", key: "device-7", data: { element: "ünïcødé ✓ 𝄞" } },
  { type: "click", data: { element: "x".repeat(200) } },
  { type: "page_view", data: { url: "https://example.com/a", title: "a" } },
];

/** The request body: RECORDS, the first one's data with a big integer JSON.stringify would round. */
const BODY = JSON.stringify(RECORDS).replace('"ünïcødé ✓ 𝄞"}', '"ünïcødé ✓ 𝄞","n":9007199254740993}');

/**
 * KAFKA_COMPRESSION, each value the docs list, from outside: the records one
 * request sent are stored in one batch with that codec (as the broker keeps
 * it) and read back by kcat with their key (the record's, else the tenant),
 * headers and value. zstd where the runtime lacks it exits 1 naming the variable.
 */
describe.each(RUNTIMES)("KAFKA_COMPRESSION on %s", (runtime) => {
  test("every codec writes records kcat reads back, stored with that codec", async () => {
    const hasZstd = runtimeHasZstd(runtime);
    const authorization = `Bearer ${await token("acme", ["ingest"])}`;
    const written = COMPRESSIONS.filter((codec) => codec !== "zstd" || hasZstd);
    // Settled, not all: a failing codec must not end the test while the others' gateways still run.
    const outcomes = await Promise.allSettled(
      written.map(async (codec) => {
        const topic = await createTopic(`compression-${codec}-${runtime}`, 1);
        const gateway = await startGateway(runtime, {
          KAFKA_BROKERS: services().brokers,
          KAFKA_TOPIC: topic,
          KAFKA_COMPRESSION: codec,
        });
        try {
          const response = await fetch(`${gateway.url}/v1/events`, {
            method: "POST",
            headers: { authorization, "content-type": "application/json" },
            body: BODY,
          });
          expect({ codec, status: response.status }).toEqual({ codec, status: 202 });
          expect(((await response.json()) as { accepted: number }).accepted).toBe(RECORDS.length);
        } finally {
          await gateway.stop("SIGKILL");
        }
        const read = await readWithKcat(topic);
        expect(read.map((record) => [codec, record.key])).toEqual([
          [codec, "device-7"],
          [codec, "acme"],
          [codec, "acme"],
        ]);
        for (const [index, record] of read.entries()) {
          const sent = RECORDS[index] as (typeof RECORDS)[number];
          expect(record.headers).toEqual([
            "tenant",
            "acme",
            "type",
            sent.type,
            "content-type",
            "application/json",
          ]);
          const value = JSON.parse(record.payload) as Record<string, unknown>;
          expect(value.tenant).toBe("acme");
          expect(value.type).toBe(sent.type);
          expect(typeof value.id).toBe("string");
          expect(typeof value.receivedAt).toBe("string");
        }
        // The value as sent: the big integer and the text byte for byte.
        expect(read[0]?.payload).toContain('"data":{"element":"ünïcødé ✓ 𝄞","n":9007199254740993}');
        expect({ codec, stored: await storedCompression(topic) }).toEqual({
          codec,
          stored: compressionsAlgorithms[codec].bitmask,
        });
      }),
    );
    for (const outcome of outcomes) if (outcome.status === "rejected") throw outcome.reason;
    if (!hasZstd) {
      const refused = await runUntilExit(runtime, {
        KAFKA_BROKERS: services().brokers,
        KAFKA_COMPRESSION: "zstd",
        JWT_SECRET: "x".repeat(32),
      });
      expect(refused.code).toBe(1);
      expect(refused.stdout + refused.stderr).toContain("KAFKA_COMPRESSION: zstd needs");
    }
  }, 60_000);
});
