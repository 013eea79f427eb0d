import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { services } from "../support/kafka.ts";
import { token } from "../support/tokens.ts";
import { type RunningGateway, startGateway, TestSocket } from "./harness.ts";

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
    expect(subjects(await presenceUntil(bun, channel, (answer) => answer.total === 2))).toEqual({
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
