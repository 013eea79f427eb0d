// Preloaded into a gateway by test/e2e/msk-permissions.test.ts (NODE_OPTIONS=--import on Node,
// BUN_OPTIONS=--preload on Bun): appends the key of every Kafka API the process sends a request
// for, once each, to KAFKA_APIS_FILE. @platformatic/kafka announces each request on this
// diagnostics channel, so nothing in the gateway is changed to observe it. Plain JavaScript:
// Node 20 imports no TypeScript.
import { tracingChannel } from "node:diagnostics_channel";
import { appendFileSync } from "node:fs";

const file = process.env.KAFKA_APIS_FILE;
const seen = new Set();
const ignore = () => {};
// Held for the process's life: channels are kept in a weak registry, so one nobody references can be
// collected before @platformatic/kafka asks for it by name, which then gets a new one without this
// subscriber (on Bun a clean-clone CI run recorded nothing).
globalThis.kafkaApisChannel = tracingChannel("plt:kafka:connections:api");
globalThis.kafkaApisChannel.subscribe({
  start(request) {
    if (!file || seen.has(request.apiKey)) return;
    seen.add(request.apiKey);
    appendFileSync(file, `${request.apiKey}\n`);
  },
  end: ignore,
  asyncStart: ignore,
  asyncEnd: ignore,
  error: ignore,
});
