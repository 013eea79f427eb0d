import { describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TEST_SECRET, token } from "../support/tokens.ts";
import { waitUntil } from "../support/wait.ts";
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

/**
 * Reads what the server sent a paused raw socket, frame by frame (RFC 6455 §5.2,
 * unmasked), and resolves with the code of its close frame, or 1006 if the
 * connection ended without one.
 */
function closeCode(socket: net.Socket): Promise<number> {
  return new Promise((resolve) => {
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        if (buffered.length < 2) return;
        const opcode = (buffered[0] as number) & 0x0f;
        let length = (buffered[1] as number) & 0x7f;
        let offset = 2;
        if (length === 126) {
          if (buffered.length < 4) return;
          length = buffered.readUInt16BE(2);
          offset = 4;
        } else if (length === 127) {
          if (buffered.length < 10) return;
          length = Number(buffered.readBigUInt64BE(2));
          offset = 10;
        }
        if (buffered.length < offset + length) return;
        if (opcode === 0x8) {
          socket.off("data", onData);
          resolve(length >= 2 ? buffered.readUInt16BE(offset) : 1005);
          return;
        }
        buffered = buffered.subarray(offset + length);
      }
    };
    socket.on("data", onData);
    socket.once("close", () => resolve(1006));
    socket.resume();
  });
}

async function metricValue(gateway: RunningGateway, name: string): Promise<number> {
  const text = await (await fetch(`${gateway.url}/metrics`)).text();
  const line = text.split("\n").find((entry) => entry.startsWith(`${name} `));
  return line ? Number(line.split(" ")[1]) : 0;
}

describe.each(RUNTIMES)("WebSocket under load on %s", (runtime) => {
  test("a stalled client is disconnected, with 1013 where the close frame fits behind its backlog, while 100 others keep receiving everything", async () => {
    const folder = await mkdtemp(join(tmpdir(), "slow-"));
    const gateway = await startGateway(runtime, {
      JWT_SECRET: TEST_SECRET,
      LOCAL_LOG_DIR: folder,
      WS_BACKPRESSURE_BYTES: "262144",
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
      const events = (client: TestSocket) => client.frames.filter((frame) => frame.type === "event").length;
      await waitUntil(
        () => fast.every((client) => events(client) >= sent),
        "every fast client to get every event",
      );
      expect(await metricValue(gateway, "gateway_ws_slow_consumer_disconnects_total")).toBe(1);
      // What docs/runbooks.md#gatewayslowconsumers has the operator look for: which tenant, which channels.
      expect(
        gateway.logs.filter((entry) => String(entry.msg).startsWith("slow WebSocket consumer closed")),
      ).toEqual([
        expect.objectContaining({
          level: "warn",
          tenant: "acme",
          channels: ["flood"],
          subscriptions: 1,
          closed: 1,
        }),
      ]);
      for (const client of fast) expect(events(client)).toBe(sent);
      // The close frame waits behind what the stalled client never read: read it all, then the code.
      // The engines drop any frame, the close frame too, once a socket holds more than their limit
      // (2 × WS_BACKPRESSURE_BYTES): the 1013 is queued before, on both runtimes.
      expect(await closeCode(stalled)).toBe(1013);
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
