import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { services } from "../support/kafka.ts";
import { token } from "../support/tokens.ts";
import { RUNTIMES, type RunningGateway, startGateway, TestSocket } from "./harness.ts";

interface PresenceAnswer {
  channel: string;
  scope: string;
  total: number;
  members: Array<{ subject: string; connections: number }>;
}

async function watch(
  gateway: RunningGateway,
  subject: string,
  channel: string,
  tenant = "acme",
): Promise<TestSocket> {
  const jwt = await token(tenant, ["subscribe"], { sub: subject });
  const socket = new TestSocket(`${gateway.wsUrl}?token=${jwt}`);
  await socket.opened();
  await socket.next((frame) => frame.type === "connected");
  socket.send({ type: "subscribe", channel });
  await socket.next((frame) => frame.type === "subscribed");
  return socket;
}

async function presence(gateway: RunningGateway, channel: string, tenant = "acme"): Promise<PresenceAnswer> {
  const response = await fetch(`${gateway.url}/v1/channels/${channel}/presence`, {
    headers: { authorization: `Bearer ${await token(tenant, ["subscribe"])}` },
  });
  expect(response.status).toBe(200);
  return (await response.json()) as PresenceAnswer;
}

/** Asks until `done` holds (instances write presence in the background), or fails with the last answer. */
async function presenceUntil(
  gateway: RunningGateway,
  channel: string,
  done: (answer: PresenceAnswer) => boolean,
): Promise<PresenceAnswer> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const answer = await presence(gateway, channel);
    if (done(answer)) return answer;
    if (Date.now() > deadline) throw new Error(`presence never matched: ${JSON.stringify(answer)}`);
    await Bun.sleep(100);
  }
}

const subjects = (answer: PresenceAnswer) =>
  Object.fromEntries(answer.members.map((member) => [member.subject, member.connections]));

describe("presence across two instances sharing Redis (one on each runtime)", () => {
  let node: RunningGateway;
  let bun: RunningGateway;
  beforeAll(async () => {
    const env = { KAFKA_BROKERS: "", REDIS_URL: services().redisUrl, PRESENCE_TTL_MS: "3000" };
    [node, bun] = await Promise.all([startGateway("node", env), startGateway("bun", env)]);
  });
  afterAll(async () => {
    await Promise.all([node?.stop(), bun?.stop()]);
  });

  test("either instance answers for both; an instance killed with SIGKILL drops out after the TTL", async () => {
    const channel = `room-${Date.now()}`;
    // The instance a client subscribed on counts it at once (the others within a second or so).
    const first = await watch(bun, "ann", channel);
    expect(subjects(await presence(bun, channel))).toEqual({ ann: 1 });
    first.close();
    await first.closed;
    expect(subjects(await presence(bun, channel))).toEqual({});
    const sockets = [
      await watch(node, "ann", channel),
      await watch(node, "ann", channel),
      await watch(bun, "ann", channel),
      await watch(bun, "bob", channel),
      // Same channel name in another tenant: never counted here.
      await watch(bun, "eve", channel, "globex"),
    ];
    const both = await presenceUntil(
      node,
      channel,
      (answer) => answer.total === 2 && subjects(answer).ann === 3,
    );
    expect(both).toMatchObject({ channel, scope: "cluster" });
    expect(subjects(both)).toEqual({ ann: 3, bob: 1 });
    expect(subjects(await presenceUntil(bun, channel, (answer) => subjects(answer).ann === 3))).toEqual({
      ann: 3,
      bob: 1,
    });

    (sockets[0] as TestSocket).close();
    await presenceUntil(bun, channel, (answer) => subjects(answer).ann === 2);

    await bun.stop("SIGKILL");
    const after = await presenceUntil(node, channel, (answer) => answer.total === 1);
    expect(subjects(after)).toEqual({ ann: 1 });
    for (const socket of sockets) socket.close();
  });
});

describe("presence without Redis", () => {
  let gateway: RunningGateway;
  beforeAll(async () => {
    gateway = await startGateway("bun", { KAFKA_BROKERS: "", REDIS_URL: "" });
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  test("is this instance's, and the answer says so", async () => {
    const socket = await watch(gateway, "solo", "lobby");
    const answer = await presenceUntil(gateway, "lobby", (a) => a.total === 1);
    expect(answer).toEqual({
      channel: "lobby",
      scope: "instance",
      total: 1,
      members: [{ subject: "solo", connections: 1 }],
    });
    socket.close();
    await presenceUntil(gateway, "lobby", (a) => a.total === 0);
  });
});

describe.each(RUNTIMES)(
  "join and leave events across two instances sharing Redis (subscriber on %s)",
  (runtime) => {
    const TTL_MS = 3000;
    let watcherSide: RunningGateway;
    let other: RunningGateway;
    beforeAll(async () => {
      const env = { KAFKA_BROKERS: "", REDIS_URL: services().redisUrl, PRESENCE_TTL_MS: String(TTL_MS) };
      [watcherSide, other] = await Promise.all([
        startGateway(runtime, env),
        startGateway(runtime === "node" ? "bun" : "node", env),
      ]);
    });
    afterAll(async () => {
      await Promise.all([watcherSide?.stop(), other?.stop()]);
    });

    test("a subject's first connection on the other instance is a join, its last one gone a leave; SIGKILL is a leave within the TTL", async () => {
      const channel = `stage-${runtime}-${Date.now()}`;
      const jwt = await token("acme", ["subscribe"], { sub: "watcher" });
      const watcher = new TestSocket(`${watcherSide.wsUrl}?token=${jwt}`);
      // Every frame, kept apart from the ones `next` consumes.
      const frames: Array<Record<string, unknown>> = [];
      watcher.socket.addEventListener("message", (event) => frames.push(JSON.parse(String(event.data))));
      await watcher.opened();
      await watcher.next((frame) => frame.type === "connected");
      watcher.send({ type: "subscribe", channel, presence: true });
      await watcher.next((frame) => frame.type === "subscribed");
      // Default off: a plain subscriber of the channel never sees them.
      const plain = await watch(watcherSide, "plain", channel);
      const presenceFrames = (frame: Record<string, unknown>) =>
        frame.type === "join" || frame.type === "leave";
      // `plain`'s arrival may come first; never the watcher's own (it is in the baseline).
      const ofCarol = (frame: Record<string, unknown>) => presenceFrames(frame) && frame.subject === "carol";

      const first = await watch(other, "carol", channel);
      const second = await watch(other, "carol", channel);
      expect(await watcher.next(ofCarol, 10_000)).toEqual({ type: "join", channel, subject: "carol" });
      // One of carol's two connections goes: she is still there, no leave.
      first.close();
      await Bun.sleep(2500);
      const leftEarly = watcher.frames.filter((frame) => ofCarol(frame) && frame.type === "leave");
      expect(leftEarly).toEqual([]);

      await other.stop("SIGKILL");
      const killedAt = Date.now();
      expect(await watcher.next(ofCarol, TTL_MS + 5000)).toEqual({
        type: "leave",
        channel,
        subject: "carol",
      });
      // The entries expire PRESENCE_TTL_MS after the dead instance's last write, seen at the next check (1 s).
      expect(Date.now() - killedAt).toBeLessThan(TTL_MS + 1500);
      expect(plain.frames.filter(presenceFrames)).toEqual([]);
      expect(frames.filter((frame) => presenceFrames(frame) && frame.subject === "watcher")).toEqual([]);
      second.close();
      watcher.close();
      plain.close();
    }, 30_000);
  },
);
