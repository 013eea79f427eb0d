// The benchmark's baseline: POST /v1/events written the usual way, with
// Fastify, KafkaJS, jose and ajv and no tuning. Each request verifies its
// HS256 token with jose (no cache), validates every record's `data` with ajv
// against the schema of its `type` (the gateway's `schemas/` folder), sends
// the request's records with one `producer.send` (idempotent, acks=all) and
// answers 202 once Kafka acknowledged them.
//   JWT_SECRET=… KAFKA_BROKERS=host:port [KAFKA_TOPIC=events] [PORT=8080] node server.mjs
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import Fastify from "fastify";
import { jwtVerify } from "jose";
import { Kafka, logLevel, Partitioners } from "kafkajs";

const secret = new TextEncoder().encode(process.env.JWT_SECRET ?? "");
const topic = process.env.KAFKA_TOPIC ?? "events";
const schemaDir = fileURLToPath(new URL("../../../schemas", import.meta.url));

const ajv = new Ajv2020({ allErrors: false });
addFormats(ajv);
const validators = new Map(
  readdirSync(schemaDir)
    .filter((name) => name.endsWith(".json"))
    .map((name) => [
      basename(name, ".json"),
      ajv.compile(JSON.parse(readFileSync(join(schemaDir, name), "utf8"))),
    ]),
);

const kafka = new Kafka({
  clientId: "baseline-fastify-kafkajs",
  brokers: (process.env.KAFKA_BROKERS ?? "127.0.0.1:9092").split(","),
  logLevel: logLevel.WARN,
});
const producer = kafka.producer({
  idempotent: true,
  maxInFlightRequests: 1,
  createPartitioner: Partitioners.DefaultPartitioner,
});
await producer.connect();

const app = Fastify({ logger: false, bodyLimit: 1024 * 1024 });

app.post("/v1/events", async (request, reply) => {
  const token = /^Bearer (.+)$/.exec(request.headers.authorization ?? "")?.[1];
  let claims;
  try {
    ({ payload: claims } = await jwtVerify(token ?? "", secret, { algorithms: ["HS256"] }));
  } catch {
    return reply.code(401).send({ error: "unauthorized" });
  }
  if (
    !String(claims.scope ?? "")
      .split(" ")
      .includes("ingest")
  )
    return reply.code(403).send({ error: "forbidden" });

  const records = Array.isArray(request.body) ? request.body : [request.body];
  const receivedAt = new Date().toISOString();
  const messages = [];
  const errors = [];
  for (const [index, record] of records.entries()) {
    const validate = validators.get(record?.type);
    if (!validate) errors.push({ index, reason: "unknown type" });
    else if (!validate(record.data)) errors.push({ index, reason: ajv.errorsText(validate.errors) });
    else {
      messages.push({
        key: record.key ?? claims.tenant,
        value: JSON.stringify({
          id: record.id ?? randomUUID(),
          ...record,
          tenant: claims.tenant,
          receivedAt,
        }),
        headers: { tenant: claims.tenant, type: record.type, "content-type": "application/json" },
      });
    }
  }
  const body = { accepted: messages.length, rejected: errors.length, errors };
  if (messages.length === 0) return reply.code(422).send(body);
  await producer.send({ topic, acks: -1, messages });
  return reply.code(202).send(body);
});

const shutdown = async () => {
  await app.close();
  await producer.disconnect();
  process.exit(0);
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

await app.listen({ host: process.env.HOST ?? "127.0.0.1", port: Number(process.env.PORT ?? 8080) });
console.log(JSON.stringify({ msg: "listening", port: app.server.address().port }));
