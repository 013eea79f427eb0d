import { describe, expect, test } from "bun:test";
import {
  AuthenticationError,
  MultipleErrors,
  NetworkError,
  ResponseError,
  TimeoutError,
  UnsupportedApiError,
  UserError,
} from "@platformatic/kafka";
import { classifyFailure, noAnswerOf } from "../../../src/infra/kafka/writer.ts";
import { SinkNoAnswerError, SinkUnavailableError, UndeliverableError } from "../../../src/ports/sink.ts";

/** The error Producer.send rejects with when the broker answers `code` for one partition (as 1.35 builds it). */
function produceFailure(code: number): Error {
  const response = new ResponseError(0, 11, { "/responses/0/partitionResponses/0": [code, null] }, {});
  return new MultipleErrors("Producing messages failed.", [response]);
}

describe("classifyFailure", () => {
  test.each([
    [10, "MESSAGE_TOO_LARGE", "too_large"],
    [18, "RECORD_LIST_TOO_LARGE", "too_large"],
    [87, "INVALID_RECORD", "invalid_record"],
    [2, "CORRUPT_MESSAGE", "invalid_record"],
    [32, "INVALID_TIMESTAMP", "invalid_record"],
  ])(
    "broker code %d (%s) refuses the records: %s, split down to the record at fault",
    (code, name, reason) => {
      const refusal = classifyFailure(produceFailure(code));
      expect(refusal).toBeInstanceOf(UndeliverableError);
      expect((refusal as UndeliverableError).reason).toBe(reason as never);
      expect(refusal?.sinkCode).toBe(name);
    },
  );

  test.each([
    [29, "TOPIC_AUTHORIZATION_FAILED"],
    [31, "CLUSTER_AUTHORIZATION_FAILED"],
    [3, "UNKNOWN_TOPIC_OR_PARTITION"],
    [100, "UNKNOWN_TOPIC_ID"],
    [17, "INVALID_TOPIC_EXCEPTION"],
    [58, "SASL_AUTHENTICATION_FAILED"],
    [76, "UNSUPPORTED_COMPRESSION_TYPE"],
    [43, "UNSUPPORTED_FOR_MESSAGE_FORMAT"],
  ])("broker code %d (%s) refuses the whole topic: it is held, not split", (code, name) => {
    const refusal = classifyFailure(produceFailure(code));
    expect(refusal).toBeInstanceOf(SinkUnavailableError);
    expect(refusal?.sinkCode).toBe(name);
  });

  test("the client's own unknown-topic, authentication and version errors refuse the topic too", () => {
    // What the client answers when Metadata says UNKNOWN_TOPIC_OR_PARTITION on a cluster that does not create topics.
    expect(classifyFailure(new UserError("Unknown topic events."))?.sinkCode).toBe(
      "UNKNOWN_TOPIC_OR_PARTITION",
    );
    expect(
      classifyFailure(new MultipleErrors("metadata failed 4 times.", [new UserError("Unknown topic dlq.")]))
        ?.sinkCode,
    ).toBe("UNKNOWN_TOPIC_OR_PARTITION");
    expect(classifyFailure(new AuthenticationError("SASL authentication failed."))?.sinkCode).toBe(
      "SASL_AUTHENTICATION_FAILED",
    );
    expect(classifyFailure(new UnsupportedApiError("Unsupported API Produce."))).toBeInstanceOf(
      SinkUnavailableError,
    );
    // Any other misuse of the client is not a topic fault.
    expect(classifyFailure(new UserError("Failed to serialize a message."))).toBeUndefined();
  });

  test("a SASL handshake the broker refused, as the client reports it, refuses the topic", () => {
    // 1.35 over a real SCRAM listener with a wrong password: the broker's code behind the AuthenticationError,
    // the cause of the connection's NetworkError, behind the pool's and the metadata retries' MultipleErrors.
    const saslAnswer = new ResponseError(36, 2, { "": [58, "Authentication failed"] }, {});
    const refused = new AuthenticationError("SASL authentication failed.", { cause: saslAnswer });
    const connection = new NetworkError("Connection to 127.0.0.1:9094 failed.", { cause: refused });
    const failure = new MultipleErrors("metadata failed 2 times.", [
      new MultipleErrors("Cannot connect to any broker.", [connection]),
    ]);
    expect(classifyFailure(failure)?.sinkCode).toBe("SASL_AUTHENTICATION_FAILED");
    // A connection that failed for a network reason stays transient.
    const refusedSocket = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    expect(classifyFailure(new NetworkError("Connection failed.", { cause: refusedSocket }))).toBeUndefined();
  });

  test("the refusal is found behind the client's own retries", () => {
    const retried = new MultipleErrors("produce failed 2 times.", [
      new NetworkError("Connection closed"),
      produceFailure(10),
    ]);
    expect(classifyFailure(retried)).toBeInstanceOf(UndeliverableError);
  });

  test.each([
    [6, "NOT_LEADER_OR_FOLLOWER"],
    [5, "LEADER_NOT_AVAILABLE"],
    [7, "REQUEST_TIMED_OUT"],
    [19, "NOT_ENOUGH_REPLICAS"],
    [20, "NOT_ENOUGH_REPLICAS_AFTER_APPEND"],
    [56, "KAFKA_STORAGE_ERROR"],
    [45, "OUT_OF_ORDER_SEQUENCE_NUMBER"],
    [59, "UNKNOWN_PRODUCER_ID"],
    [89, "THROTTLING_QUOTA_EXCEEDED"],
    [-1, "UNKNOWN_SERVER_ERROR"],
  ])("broker code %d (%s) is transient: the queue retries it", (code) => {
    expect(classifyFailure(produceFailure(code))).toBeUndefined();
  });

  test("network failures, timeouts and foreign errors are transient", () => {
    expect(classifyFailure(new NetworkError("Connection refused"))).toBeUndefined();
    expect(classifyFailure(new TimeoutError("Request timed out"))).toBeUndefined();
    expect(classifyFailure(new Error("no acknowledgement within 5000 ms"))).toBeUndefined();
    expect(classifyFailure("not even an error")).toBeUndefined();
  });
});

describe("noAnswerOf", () => {
  test("a connection not made within the connect timeout, however the client's retries wrap it, is a write never answered", () => {
    const connect = new TimeoutError("Connection to 10.0.0.1:9092 timed out.");
    const retried = new MultipleErrors("Producing messages failed after 3 attempts.", [
      new NetworkError("Connection to 10.0.0.1:9092 failed.", { cause: connect }),
    ]);
    for (const error of [connect, retried]) {
      const noAnswer = noAnswerOf(error);
      expect(noAnswer).toBeInstanceOf(SinkNoAnswerError);
      expect(noAnswer?.cause).toBe(error);
    }
    // Answered: a refused connection, a broker error.
    expect(noAnswerOf(new NetworkError("Connection refused"))).toBeUndefined();
    expect(noAnswerOf(produceFailure(6))).toBeUndefined();
  });
});
