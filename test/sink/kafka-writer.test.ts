import { describe, expect, test } from "bun:test";
import { MultipleErrors, NetworkError, ResponseError } from "@platformatic/kafka";
import { refusalOf } from "../../src/sink/kafka-writer.ts";

/** The error Producer.send rejects with when the broker answers `code` for one partition (as 1.35 builds it). */
function produceFailure(code: number): Error {
  const response = new ResponseError(0, 11, { "/responses/0/partitionResponses/0": [code, null] }, {});
  return new MultipleErrors("Producing messages failed.", [response]);
}

describe("refusalOf", () => {
  test.each([
    [10, "MESSAGE_TOO_LARGE", "too_large"],
    [18, "RECORD_LIST_TOO_LARGE", "too_large"],
    [87, "INVALID_RECORD", "invalid_record"],
    [2, "CORRUPT_MESSAGE", "invalid_record"],
    [29, "TOPIC_AUTHORIZATION_FAILED", "not_authorized"],
    [31, "CLUSTER_AUTHORIZATION_FAILED", "not_authorized"],
  ])("broker code %d (%s) is a refusal for good: %s", (code, name, reason) => {
    const refusal = refusalOf(produceFailure(code));
    expect(refusal?.reason).toBe(reason as never);
    expect(refusal?.sinkCode).toBe(name);
  });

  test("the refusal is found behind the client's own retries", () => {
    const retried = new MultipleErrors("produce failed 2 times.", [
      new NetworkError("Connection closed"),
      produceFailure(10),
    ]);
    expect(refusalOf(retried)?.reason).toBe("too_large");
  });

  test("transient failures are not refusals: the queue retries them", () => {
    expect(refusalOf(produceFailure(6))).toBeUndefined(); // NOT_LEADER_OR_FOLLOWER
    expect(refusalOf(produceFailure(19))).toBeUndefined(); // NOT_ENOUGH_REPLICAS
    expect(refusalOf(new NetworkError("Connection refused"))).toBeUndefined();
    expect(refusalOf(new Error("no acknowledgement within 5000 ms"))).toBeUndefined();
  });
});
