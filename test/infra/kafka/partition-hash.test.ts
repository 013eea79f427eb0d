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
