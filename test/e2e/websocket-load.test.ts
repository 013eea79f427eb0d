import { describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { RUNTIMES, type RunningGateway, startGateway, TestSocket } from "./harness.ts";

/** A masked client text frame (RFC 6455 §5.3); small payloads only. */
function clientFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = Buffer.from([1, 2, 3, 4]);
  const masked = payload.map((byte, i) => byte ^ (mask[i % 4] as number));
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]);
}

/** A WebSocket client that subscribes and then never reads: the slow consumer. */
async function stalledClient(gateway: RunningGateway, bearer: string, channel: string): Promise<net.Socket> {
  const socket = net.connect(gateway.port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", reject);
  });
  socket.write(
    `GET /v1/ws?token=${bearer} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
  );
  await new Promise<void>((resolve) => {
    let seen = "";
    const onData = (chunk: Buffer) => {
      seen += chunk.toString("latin1");
      if (seen.includes('"subscribed"')) {
        socket.off("data", onData);
        socket.pause();
        resolve();
      } else if (seen.includes('"connected"') && !seen.includes("sent-subscribe")) {
        seen += "sent-subscribe";
        socket.write(clientFrame(JSON.stringify({ type: "subscribe", channel })));
      }
    };
    socket.on("data", onData);
  });
  return socket;
}

async function metricValue(gateway: RunningGateway, name: string): Promise<number> {
  const text = await (await fetch(`${gateway.url}/metrics`)).text();
  const line = text.split("\n").find((entry) => entry.startsWith(`${name} `));
  return line ? Number(line.split(" ")[1]) : 0;
}

describe.each(RUNTIMES)("WebSocket under load on %s", (runtime) => {
  test("a stalled client is closed with 1013 while 100 others keep receiving everything", async () => {
    const folder = await mkdtemp(join(tmpdir(), "slow-"));
    const gateway = await startGateway(runtime, {
      JWT_SECRET: TEST_SECRET,
      LOCAL_LOG_DIR: folder,
      WS_BACKPRESSURE_BYTES: "65536",
      WS_CONNECTS_PER_SEC_PER_IP: "100000",
      RATE_LIMIT_EVENTS_PER_SEC: "10000000",
    });
    try {
      const bearer = await token("acme", ["subscribe"]);
      const stalled = await stalledClient(gateway, bearer, "flood");
      const fast: TestSocket[] = [];
      for (let i = 0; i < 100; i++) {
        const client = new TestSocket(`${gateway.wsUrl}?token=${bearer}`);
        fast.push(client);
      }
      await Promise.all(fast.map((client) => client.next((frame) => frame.type === "connected")));
      for (const client of fast) client.send({ type: "subscribe", channel: "flood" });
      await Promise.all(fast.map((client) => client.next((frame) => frame.type === "subscribed")));

      const ingest = {
        authorization: `Bearer ${await token("acme", ["ingest", "publish"])}`,
        "content-type": "application/json",
      };
      const padding = "x".repeat(4000);
      let sent = 0;
      for (
        let round = 0;
        round < 40 && (await metricValue(gateway, "gateway_ws_slow_consumer_disconnects_total")) === 0;
        round++
      ) {
        const records = Array.from({ length: 50 }, (_, i) => ({
          type: "click",
          channel: "flood",
          data: { element: `${round}-${i}`, padding },
        }));
        const response = await fetch(`${gateway.url}/v1/events`, {
          method: "POST",
          headers: ingest,
          body: JSON.stringify(records),
        });
        expect(response.status).toBe(202);
        sent += records.length;
        await Bun.sleep(100);
      }
      await Bun.sleep(1500);
      expect(await metricValue(gateway, "gateway_ws_slow_consumer_disconnects_total")).toBe(1);
      for (const client of fast) {
        const events = client.frames.filter((frame) => frame.type === "event");
        expect(events.length).toBe(sent);
      }
      stalled.destroy();
      for (const client of fast) client.close();
    } finally {
      await gateway.stop("SIGKILL");
      await rm(folder, { recursive: true, force: true });
    }
  }, 60_000);

  test("SIGTERM with 1,000 open sockets: every one gets reconnect and a 1001 close before the deadline", async () => {
    const folder = await mkdtemp(join(tmpdir(), "drain-"));
    const gateway = await startGateway(runtime, {
      JWT_SECRET: TEST_SECRET,
      LOCAL_LOG_DIR: folder,
      DRAIN_DELAY_MS: "500",
      DRAIN_TIMEOUT_MS: "8000",
      WS_CONNECTS_PER_SEC_PER_IP: "100000",
    });
    try {
      const bearer = await token("acme", ["subscribe"]);
      const clients: TestSocket[] = [];
      for (let batch = 0; batch < 10; batch++) {
        const opened = Array.from({ length: 100 }, () => new TestSocket(`${gateway.wsUrl}?token=${bearer}`));
        await Promise.all(opened.map((client) => client.next((frame) => frame.type === "connected", 15_000)));
        clients.push(...opened);
      }
      gateway.process.kill("SIGTERM");
      const closes = await Promise.all(clients.map((client) => client.closed));
      expect(closes.filter((close) => close.code !== 1001)).toEqual([]);
      expect(clients.filter((client) => !client.frames.some((frame) => frame.type === "reconnect"))).toEqual(
        [],
      );
      // Exit 0 is "before the deadline": past DRAIN_TIMEOUT_MS the drain ends with exit code 1.
      expect(await gateway.process.exited).toBe(0);
    } finally {
      await gateway.stop("SIGKILL");
      await rm(folder, { recursive: true, force: true });
    }
  }, 60_000);
});
