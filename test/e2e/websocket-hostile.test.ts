import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TEST_SECRET, token } from "../support/tokens.ts";
import {
  connectSubscriber,
  RUNTIMES,
  type RunningGateway,
  rawUpgrade,
  startGateway,
  TestSocket,
} from "./harness.ts";

const MAX_PAYLOAD = 65536;

async function live(gateway: RunningGateway): Promise<number> {
  return (await fetch(`${gateway.url}/health/live`)).status;
}

/** One frame as a client writes it (RFC 6455 §5.2): masked unless told, `length` unless the payload's. */
function wireFrame(
  first: number,
  payload: Buffer,
  { masked = true, length = payload.length }: { masked?: boolean; length?: number } = {},
): Buffer {
  const head =
    length < 126 ? Buffer.from([first, length]) : Buffer.from([first, 126, length >> 8, length & 255]);
  if (!masked) return Buffer.concat([head, payload]);
  head[1] = (head[1] as number) | 0x80;
  const mask = randomBytes(4);
  return Buffer.concat([head, mask, payload.map((byte, index) => byte ^ (mask[index % 4] as number))]);
}

/**
 * Opens an authenticated socket over TCP, writes `frame` once it is connected,
 * and says how the gateway answered within `waitMs`: the close code it sent
 * (null: a close frame without one), and whether the connection ended.
 */
async function answerToRawFrame(
  port: number,
  frame: Buffer,
  waitMs = 1000,
): Promise<{ close: number | null | undefined; ended: boolean }> {
  const socket = connect(port, "127.0.0.1");
  let received = Buffer.alloc(0);
  let ended = false;
  socket.on("data", (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
  });
  socket.on("error", () => {});
  const closed = new Promise<void>((resolve) => socket.on("close", resolve)).then(() => {
    ended = true;
  });
  socket.write(
    `GET /v1/ws?token=${await token("acme", ["subscribe"])} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n` +
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
  );
  for (let waited = 0; !received.includes('"connected"') && waited < 5000; waited += 10) await Bun.sleep(10);
  const start = received.length;
  socket.write(frame);
  await Promise.race([closed, Bun.sleep(waitMs)]);
  socket.destroy();
  // A frame from the server is never masked: 0x88 (close), its length, then the code.
  const answer = received.subarray(start);
  const close = answer[0] === 0x88 ? ((answer[1] as number) >= 2 ? answer.readUInt16BE(2) : null) : undefined;
  return { close, ended };
}

/** Sends `frame` and waits for the error frame it earns; the socket must stay open and answer a ping. */
async function expectBadFrame(socket: TestSocket, frame: string | Uint8Array): Promise<void> {
  socket.socket.send(frame);
  expect(await socket.next()).toMatchObject({ type: "error", code: "bad_frame" });
  socket.send({ type: "ping" });
  expect(await socket.next()).toEqual({ type: "pong" });
}

describe.each(RUNTIMES)("hostile WebSocket input on %s", (runtime) => {
  let gateway: RunningGateway;
  let folder: string;
  let bystander: TestSocket;

  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), "ws-hostile-"));
    gateway = await startGateway(runtime, {
      JWT_SECRET: TEST_SECRET,
      LOCAL_LOG_DIR: folder,
      WS_MAX_PAYLOAD_BYTES: String(MAX_PAYLOAD),
      WS_CONNECTS_PER_SEC_PER_IP: "100000",
    });
    bystander = await connectSubscriber(gateway);
  });
  afterAll(async () => {
    // Whatever was sent, the bystander kept working and nothing escaped as an uncaught error.
    bystander.send({ type: "ping" });
    expect(await bystander.next()).toEqual({ type: "pong" });
    expect(await live(gateway)).toBe(200);
    expect(gateway.logs.filter((entry) => String(entry.msg).startsWith("uncaught"))).toEqual([]);
    bystander.close();
    await gateway.stop("SIGKILL");
    await rm(folder, { recursive: true, force: true });
  });

  test("an upgrade asking for a WebSocket version other than 13 gets 426 naming 13 (RFC 6455 §4.4), counted as refused", async () => {
    const upgrades = async (status: number) => {
      const text = await (await fetch(`${gateway.url}/metrics`)).text();
      const line = text
        .split("\n")
        .find((candidate) =>
          candidate.startsWith(`gateway_http_requests_total{route="/v1/ws",method="GET",status="${status}"}`),
        );
      return line === undefined ? 0 : Number(line.split(" ").at(-1));
    };
    const [accepted, refused] = [await upgrades(101), await upgrades(426)];
    for (const version of ["8", "", "13, 8", "abc"]) {
      const answer = await rawUpgrade(gateway.port, { "Sec-WebSocket-Version": version });
      expect({ version, status: answer.status }).toEqual({ version, status: 426 });
      expect(answer.headers.get("sec-websocket-version")).toBe("13");
      expect(JSON.parse(answer.body).error).toBe("upgrade_required");
    }
    const upgraded = await rawUpgrade(gateway.port, {});
    expect(upgraded.status).toBe(101);
    // uWebSockets.js upgraded any version, Bun.serve refused it after the core accepted: both were counted 101.
    expect([(await upgrades(101)) - accepted, (await upgrades(426)) - refused]).toEqual([1, 4]);
  });

  test("an upgrade without Upgrade: websocket, with two keys or a key that is no base64 is refused with the router's JSON answer, never upgraded", async () => {
    const key = "dGhlIHNhbXBsZSBub25jZQ==";
    const refusals: Array<[Record<string, string>, number, string]> = [
      [{ Upgrade: "" }, 426, "upgrade_required"],
      [{ Upgrade: "h2c" }, 426, "upgrade_required"],
      [{ "Sec-WebSocket-Key": key, "sec-websocket-key": "AAAAAAAAAAAAAAAAAAAAAA==" }, 400, "bad_request"],
      [{ "Sec-WebSocket-Key": "!!!!!!!!!!!!!!!!!!!!!!!!" }, 400, "bad_request"],
    ];
    for (const [headers, status, error] of refusals) {
      const answer = await rawUpgrade(gateway.port, headers);
      expect({ headers, status: answer.status }).toEqual({ headers, status });
      expect(JSON.parse(answer.body).error).toBe(error);
    }
  });

  test("a subprotocol offered is answered with the first one, a permessage-deflate offer declined", async () => {
    const answer = await rawUpgrade(gateway.port, {
      "Sec-WebSocket-Protocol": "json, bearer",
      "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
    });
    expect(answer.status).toBe(101);
    expect(answer.headers.get("sec-websocket-protocol")).toBe("json");
    expect(answer.headers.get("sec-websocket-extensions")).toBeNull();
  });

  test("an oversized frame closes that socket and no other", async () => {
    const attacker = await connectSubscriber(gateway);
    attacker.send(JSON.stringify({ type: "ping", padding: "x".repeat(MAX_PAYLOAD) }));
    // Bun sends close 1009; uWebSockets.js (Node) drops the connection without a close frame (1006).
    expect(runtime === "bun" ? [1009] : [1006, 1009]).toContain((await attacker.closed).code);
    bystander.send({ type: "ping" });
    expect(await bystander.next()).toEqual({ type: "pong" });
    expect(await live(gateway)).toBe(200);
  });

  test("a frame that breaks RFC 6455 ends that connection: 1002 or 1007 on Bun, no close frame from uWebSockets.js (as x-close-codes says)", async () => {
    const ping = Buffer.from('{"type":"ping"}');
    const violations: Array<[string, Buffer, number]> = [
      ["reserved opcode", wireFrame(0x83, ping), 1002],
      ["RSV1 without an extension", wireFrame(0xc1, ping), 1002],
      ["continuation without a start", wireFrame(0x80, ping), 1002],
      ["control frame over 125 bytes", wireFrame(0x89, Buffer.alloc(126)), 1002],
      ["fragmented control frame", wireFrame(0x09, Buffer.from("x")), 1002],
      ["close frame of 1 byte", wireFrame(0x88, Buffer.from([3])), 1002],
      ["close code 1005", wireFrame(0x88, Buffer.from([0x03, 0xed])), 1002],
      ["text frame that is not UTF-8", wireFrame(0x81, Buffer.from([0x7b, 0xff, 0x7d])), 1007],
    ];
    for (const [name, frame, code] of violations) {
      const answer = await answerToRawFrame(gateway.port, frame);
      // uWebSockets.js answers a bad close frame with an empty one, and drops the rest unannounced.
      const onNode = name.startsWith("close")
        ? { close: null, ended: true }
        : { close: undefined, ended: true };
      expect({ name, ...answer }).toEqual({
        name,
        ...(runtime === "bun" ? { close: code, ended: true } : onNode),
      });
    }
    // Not masked: Bun closes 1002; uWebSockets.js reads it as masked (garbage, no answer) and waits for more.
    const unmasked = await answerToRawFrame(gateway.port, wireFrame(0x81, ping, { masked: false }), 300);
    expect(unmasked).toEqual(
      runtime === "bun" ? { close: 1002, ended: true } : { close: undefined, ended: false },
    );
  });

  test("binary frames get bad_frame, the socket stays open", async () => {
    const socket = await connectSubscriber(gateway);
    await expectBadFrame(socket, new Uint8Array([0xff, 0x00, 0xfe, 0x81]));
    await expectBadFrame(socket, new Uint8Array(1000));
    socket.close();
  });

  test("a binary publish frame whose bytes are not UTF-8 is a bad_frame, never published as U+FFFD; a UTF-8 one is published as sent", async () => {
    const publisher = new TestSocket(
      `${gateway.wsUrl}?token=${await token("acme", ["subscribe", "publish"])}`,
    );
    await publisher.opened();
    await publisher.next((frame) => frame.type === "connected");
    publisher.send({ type: "subscribe", channel: "bytes" });
    await publisher.next((frame) => frame.type === "subscribed");
    const raw: string[] = [];
    publisher.socket.addEventListener("message", (event) => raw.push(String(event.data)));
    const frame = (data: Uint8Array, ref: string) =>
      Buffer.concat([
        Buffer.from(`{"type":"publish","channel":"bytes","ref":"${ref}","data":{"s":"`),
        data,
        Buffer.from('","n":9007199254740993}}'),
      ]);
    // 0xff is no UTF-8 byte, and 0xc3 starts a character the next byte does not finish.
    publisher.socket.send(frame(Buffer.from([0x61, 0xff, 0xc3, 0x62]), "bad"));
    expect(await publisher.next()).toMatchObject({
      type: "error",
      code: "bad_frame",
      message: "frames are UTF-8 JSON text",
    });
    publisher.socket.send(frame(Buffer.from("é😀"), "good"));
    const events = () => raw.filter((text) => text.includes('"type":"event"'));
    for (
      let waited = 0;
      waited < 5000 && (events().length === 0 || !raw.includes('{"type":"published","ref":"good"}'));
      waited += 20
    )
      await Bun.sleep(20);
    expect(raw).toContain('{"type":"published","ref":"good"}');
    // The bad frame published nothing: the good one's event is the channel's only one.
    expect(events().length).toBe(1);
    expect(events()[0]).toContain('"data":{"s":"é😀","n":9007199254740993}');
    publisher.close();
  });

  test("garbage and non-JSON text frames get bad_frame", async () => {
    const socket = await connectSubscriber(gateway);
    const garbage = [
      "",
      "not json",
      "{",
      "\u0000\u0001",
      "null",
      "1e999999",
      '"subscribe"',
      "[]",
      '{"type":"subscribe","channel":{"$gt":""}}',
      '{"type":"auth"}',
      '{"type":{"nested":true}}',
      `{"type":"${"x".repeat(10_000)}"}`,
      '{"__proto__":{"type":"ping"}}',
      // A byte order mark is no JSON text here, on either engine (uWebSockets.js's TextDecoder dropped it).
      '\uFEFF{"type":"ping"}',
      Buffer.from('\uFEFF{"type":"ping"}'),
    ];
    for (const frame of garbage) await expectBadFrame(socket, frame);
    socket.close();
  });

  test("20,000 levels of nesting get bad_frame, and /health/live answers during a burst of them", async () => {
    const socket = await connectSubscriber(gateway);
    const deep = [
      "[".repeat(20_000),
      `${"[".repeat(20_000)}${"]".repeat(20_000)}`,
      `{"type":${"[".repeat(20_000)}${"]".repeat(20_000)}}`,
      `{"type":"subscribe","channel":"x","since":${'{"a":'.repeat(10_000)}1${"}".repeat(10_000)}}`,
    ];
    // How fast is the benchmark's business (a shared machine makes any bound here flaky or meaningless).
    for (const frame of deep) await expectBadFrame(socket, frame);
    // A burst of them while a probe runs: the event loop keeps answering.
    const burst = `{"type":${"[".repeat(30_000)}${"]".repeat(30_000)}}`;
    for (let i = 0; i < 20; i++) socket.socket.send(burst);
    expect(await live(gateway)).toBe(200);
    for (let i = 0; i < 20; i++) {
      expect(await socket.next()).toMatchObject({ type: "error", code: "bad_frame" });
    }
    socket.close();
  });

  test("hostile frames before authentication get bad_frame too, and auth still works after", async () => {
    const socket = new TestSocket(gateway.wsUrl);
    await socket.opened();
    for (const frame of ["[".repeat(20_000), "nope", new Uint8Array([0xff])]) {
      socket.socket.send(frame);
      expect(await socket.next()).toMatchObject({ type: "error", code: "bad_frame" });
    }
    socket.send({ type: "auth", token: await token("acme", ["subscribe"]) });
    expect(await socket.next((frame) => frame.type === "connected")).toMatchObject({ type: "connected" });
    socket.close();
  });
});
