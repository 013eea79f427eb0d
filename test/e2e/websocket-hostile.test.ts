import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
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

  test("an oversized frame closes that socket and no other", async () => {
    const attacker = await connectSubscriber(gateway);
    attacker.send(JSON.stringify({ type: "ping", padding: "x".repeat(MAX_PAYLOAD) }));
    // Bun sends close 1009; uWebSockets.js (Node) drops the connection without a close frame (1006).
    expect(runtime === "bun" ? [1009] : [1006, 1009]).toContain((await attacker.closed).code);
    bystander.send({ type: "ping" });
    expect(await bystander.next()).toEqual({ type: "pong" });
    expect(await live(gateway)).toBe(200);
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
