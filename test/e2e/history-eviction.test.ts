import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { waitUntil } from "../support/wait.ts";
import { connectSubscriber, publishEvent, RUNTIMES, type RunningGateway, startGateway } from "./harness.ts";

type Frame = Record<string, unknown>;

describe.each(RUNTIMES)("resume after the channel history dropped a channel on %s", (runtime) => {
  let gateway: RunningGateway;
  let folder: string;
  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), "ws-history-"));
    // The embedded bus: its history is the limit (with Kafka, resume reads the log instead).
    gateway = await startGateway(runtime, {
      KAFKA_BROKERS: "",
      REDIS_URL: "",
      JWT_SECRET: TEST_SECRET,
      LOCAL_LOG_DIR: folder,
      HISTORY_MAX_CHANNELS: "2",
    });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
    await rm(folder, { recursive: true, force: true });
  });

  test("a since in a dropped channel is history_gone on the socket and 410 on HTTP", async () => {
    const before = await connectSubscriber(gateway);
    before.send({ type: "subscribe", channel: "dropped" });
    await before.next((frame) => frame.type === "subscribed");
    await publishEvent(gateway, "dropped", { n: 0 });
    const seen = (await before.next((frame) => frame.type === "event")) as Frame;
    before.close();
    await before.closed;

    // Missed while away, then two other channels push "dropped" out of the history.
    for (let n = 1; n <= 3; n++) await publishEvent(gateway, "dropped", { n: n });
    await publishEvent(gateway, "second", { n: 0 });
    await publishEvent(gateway, "third", { n: 0 });
    // Published is not yet in the history: wait until the eviction shows over HTTP.
    await waitUntil(
      async () =>
        (
          await fetch(`${gateway.url}/v1/channels/dropped/events?since=${seen.id}`, {
            headers: { authorization: `Bearer ${await token("acme", ["subscribe"])}` },
          })
        ).status === 410,
      "the channel pushed out of the history",
    );

    const after = await connectSubscriber(gateway);
    after.send({ type: "subscribe", channel: "dropped", since: seen.id });
    expect(await after.next((frame) => frame.type === "subscribed" || frame.type === "error")).toMatchObject({
      type: "subscribed",
      channel: "dropped",
    });
    expect(await after.next()).toMatchObject({ type: "error", code: "history_gone", channel: "dropped" });
    const delta = await fetch(`${gateway.url}/v1/channels/dropped/events?since=${seen.id}`, {
      headers: { authorization: `Bearer ${await token("acme", ["subscribe"])}` },
    });
    expect(delta.status).toBe(410);
    after.close();
  });

  test("a publish body past PUBLISH_MAX_BYTES is a 413", async () => {
    const response = await fetch(`${gateway.url}/v1/publish`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${await token("acme", ["publish"])}`,
        "content-type": "application/json",
      },
      body: JSON.stringify({ channel: "big", data: "x".repeat(64 * 1024) }),
    });
    expect(response.status).toBe(413);
    expect(((await response.json()) as Frame).error).toBe("payload_too_large");
  });
});
