/**
 * A Node (or Bun) producer: sends `sensor_reading` events to the gateway
 * with EventClient, typed against the gateway's schemas, with a file queue so
 * that what was not sent when the process stops goes out, once, on its next
 * start. Settings come from the environment:
 *
 *   GATEWAY_URL  the gateway (default http://localhost:8080)
 *   TOKEN        a token with scope `ingest`, or
 *   TOKEN_FILE   a file holding one, read again whenever a token is needed
 *                (a sidecar that rotates it keeps the producer going)
 *   COUNT        readings to send (default 10)
 *   QUEUE_FILE   where unsent records wait (default ./producer-queue.jsonl)
 *   CLOSE_TIMEOUT_MS  how long to keep trying at exit (default 10000)
 *
 * Prints one JSON line: the ids it enqueued and the client's stats.
 */
import { readFileSync } from "node:fs";
import { fileQueue } from "../../clients/typescript/src/file-queue.js";
import { EventClient, type GatewayEvents } from "../../clients/typescript/src/index.js";

const env = process.env;
const tokenFile = env.TOKEN_FILE;
const fixedToken = env.TOKEN;
if (!tokenFile && !fixedToken) {
  console.error("set TOKEN or TOKEN_FILE (a token with scope ingest: bun run token -- --scope ingest)");
  process.exit(2);
}

const events = new EventClient<GatewayEvents>({
  url: env.GATEWAY_URL ?? "http://localhost:8080",
  token: tokenFile ? () => readFileSync(tokenFile, "utf8").trim() : (fixedToken as string),
  storage: fileQueue(env.QUEUE_FILE ?? "producer-queue.jsonl"),
  onError: (failure) =>
    console.error(`${failure.kind} (${failure.status ?? "no answer"}): ${failure.message}`),
});

const count = Number(env.COUNT ?? 10);
const ids: Array<string | undefined> = [];
for (let n = 0; n < count; n++) {
  ids.push(
    events.enqueue({
      type: "sensor_reading",
      key: "sensor-1",
      data: { sensor: "sensor-1", value: 20 + Math.sin(n / 3) * 2, unit: "celsius" },
    }),
  );
}
await events.close({ timeoutMs: Number(env.CLOSE_TIMEOUT_MS ?? 10_000) });
console.log(JSON.stringify({ ids, stats: events.stats }));
