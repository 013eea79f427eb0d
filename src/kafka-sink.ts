import type { SinkEnvironment, StartedSink } from "./app.ts";
import type { Config } from "./config/config.ts";
import { DeliveryQueue } from "./infra/delivery/delivery-queue.ts";
import { batchBytesLimit } from "./infra/delivery/record-size.ts";
import { kafkaConnectionOptions } from "./infra/kafka/client-options.ts";
import { KafkaFanoutBus } from "./infra/kafka/fanout-bus.ts";
import { classifyFailure, KafkaWriter } from "./infra/kafka/writer.ts";
import { ensureZstd } from "./infra/kafka/zstd.ts";
import type { Logger } from "./log/logger.ts";
import { SinkUnavailableError } from "./ports/sink.ts";
import { startNamingSetting } from "./start-setting.ts";

/**
 * The Kafka half of the composition root, imported only when KAFKA_BROKERS is set: the delivery queue in
 * front of the events topic, and the fan-out bus that reads the fan-out topic.
 */
export async function startKafkaSink(sink: SinkEnvironment): Promise<StartedSink> {
  const { config, log, metrics, health, traceWrites, queueOptions } = sink;
  const kafka = kafkaConnectionOptions(config.kafka);
  // Node 20 has no zstd of its own: its WebAssembly one instantiates before anything is written or read.
  const zstdSetting = config.kafka.compression === "zstd" ? "KAFKA_COMPRESSION" : "KAFKA_FANOUT_COMPRESSION";
  if (config.kafka.compression === "zstd" || config.kafka.fanoutCompression === "zstd")
    await startNamingSetting(zstdSetting, ensureZstd(), "zstd cannot be loaded");
  const writer = new KafkaWriter(kafka, config.kafka);
  const topics = [
    config.kafka.topic,
    config.kafka.fanoutTopic,
    ...(config.kafka.dlqTopic ? [config.kafka.dlqTopic] : []),
  ];
  // A topic's limit lowered while running: read again at a refusal (at most every LIMITS_REREAD_MS), so that
  // records over it are refused before they are accepted rather than answered 202 (?ack=none) and dropped.
  let limitsReadAt = Number.NEGATIVE_INFINITY;
  const onTooLarge = () => {
    if (performance.now() - limitsReadAt < LIMITS_REREAD_MS) return;
    limitsReadAt = performance.now();
    capToTopicLimits(writer, topics, config, queue, log).catch((error) =>
      log.info({ err: error }, "topics' max.message.bytes not read again"),
    );
  };
  const queue = new DeliveryQueue(traceWrites(writer), { ...queueOptions, onTooLarge }, metrics, health, log);
  // Not ready until Kafka has answered once: ensureTopics below, or later a write or the probe.
  queue.awaitFirstContact();
  let reached = true;
  try {
    await writer.ensureTopics(topics, config.kafka.topicPartitions);
  } catch (error) {
    // Not fatal: the queue retries, /health reports the outage, the producer auto-creates topics later.
    // A refusal (credentials the brokers reject, a topic it may not create) is an answer: the writes
    // hold the topics refused, /health says degraded, and the other topics' limits still apply.
    reached = classifyFailure(error) instanceof SinkUnavailableError;
    if (reached)
      log.error({ err: error, brokers: config.kafka.brokers }, "Kafka refuses the gateway at start");
    else {
      log.error({ err: error, brokers: config.kafka.brokers }, "Kafka unreachable at start");
      queue.noteFailure(error);
    }
  }
  if (reached) {
    queue.noteReachable();
    await capToTopicLimits(writer, topics, config, queue, log);
  }
  queue.startMonitor(() => writer.probe());
  log.info(
    { brokers: config.kafka.brokers, topic: config.kafka.topic, sasl: config.kafka.saslMechanism },
    "Kafka sink",
  );
  return { queue, bus: new KafkaFanoutBus(kafka, config.kafka.fanoutTopic, queue, log, health) };
}

/** How often, at most, a refusal of a too large record has the topics' limits read again. */
const LIMITS_REREAD_MS = 10_000;

/**
 * A topic that takes smaller records than KAFKA_MAX_MESSAGE_BYTES says would
 * refuse them one at a time, each after splitting the batch that held it (a
 * delay for every tenant in that batch): its limit becomes the queue's, so
 * such a record is a 413 before it is accepted. Read at start, and again
 * when Kafka refuses a record as too large, for each topic Kafka describes: for one it does not (no DescribeConfigs
 * permission, the topic missing) the setting is trusted, and a refusal later
 * is still split down to the record at fault.
 */
async function capToTopicLimits(
  writer: KafkaWriter,
  topics: string[],
  config: Config,
  queue: DeliveryQueue,
  log: Logger,
): Promise<void> {
  const { limits, unreadable } = await writer.messageLimits(topics);
  for (const [topic, error] of unreadable)
    log.info(
      { err: error, topic },
      "topic's max.message.bytes not readable: KAFKA_MAX_MESSAGE_BYTES is trusted",
    );
  const compressed = config.kafka.compression !== "none" || config.kafka.fanoutCompression !== "none";
  for (const [topic, bytes] of limits) {
    if (bytes >= config.kafka.maxMessageBytes) continue;
    log.warn(
      { topic, topicMaxMessageBytes: bytes, KAFKA_MAX_MESSAGE_BYTES: config.kafka.maxMessageBytes },
      "a topic takes smaller records than KAFKA_MAX_MESSAGE_BYTES: its max.message.bytes applies",
    );
    queue.capBatchBytes(batchBytesLimit(bytes, compressed));
  }
}
