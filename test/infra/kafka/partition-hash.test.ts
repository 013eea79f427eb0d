import { describe, expect, test } from "bun:test";
import { defaultPartitioner } from "@platformatic/kafka";
import fc from "fast-check";
import { PartitionHash } from "../../../src/infra/kafka/partition-hash.ts";

describe("PartitionHash", () => {
  test("any key hashes as the client's default partitioner hashes it, cached or not", () => {
    const hash = new PartitionHash(3);
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 40 }), (key) => {
        const expected = defaultPartitioner({ topic: "t", value: "" }, Buffer.from(key));
        expect(hash.of(key)).toBe(expected);
        expect(hash.of(key)).toBe(expected);
      }),
      { numRuns: 500 },
    );
  });
});

describe("PartitionHash against Kafka's Java partitioner (docs/kafka.md)", () => {
  // Kafka's own murmur2 vectors (UtilsTest), and the sign bit the Java client clears (Utils.toPositive).
  const javaMurmur2: Array<[string, number]> = [
    ["21", -973932308],
    ["foobar", -790332482],
    ["a-little-bit-long-string", -985981536],
    ["abc", 479470107],
  ];
  const javaPartition = (murmur: number, partitions: number) => (murmur & 0x7fffffff) % partitions;

  test("on a power-of-two partition count every key lands where a Java producer puts it", () => {
    const hash = new PartitionHash();
    for (const [key, murmur] of javaMurmur2)
      for (const partitions of [1, 2, 4, 8, 16, 64])
        expect(hash.of(key) % partitions).toBe(javaPartition(murmur, partitions));
  });

  test("on other counts keys with the sign bit set land elsewhere, as documented", () => {
    const hash = new PartitionHash();
    expect(hash.of("21") % 6).toBe(2);
    expect(javaPartition(-973932308, 6)).toBe(0);
    expect(hash.of("acme") % 6).toBe(2);
  });
});
