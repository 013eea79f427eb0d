/**
 * SPEC: "Labels never carry unbounded values (no event ids, no raw paths, no
 * tenant ids unless bounded by config)". Every value an outside client
 * chooses — paths, methods, tenants, event types, ids, keys, channels,
 * Idempotency-Keys, WebSocket frame types — carries one marker here; after
 * that traffic no label of /metrics may hold it, the request series keep to
 * the route table, and promtool still accepts the page.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { token } from "../support/tokens.ts";
import { RUNTIMES, type RunningGateway, startGateway, TestSocket } from "./harness.ts";

const MARKER = "zqxmark";
const ROUNDS = 12;
/** Routes of the table (openapi.yaml), and what requests no route has are counted as. */
const ROUTES = new Set([
  "/v1/events",
  "/v1/publish",
  "/v1/ws",
  "/v1/sse",
  "/v1/channels/{channel}/events",
  "/health",
  "/health/live",
  "/metrics",
  "unmatched",
]);

/** Each sample line's metric name and label values. */
function samples(exposition: string): Array<{ name: string; labels: Record<string, string> }> {
  return exposition
    .split("\n")
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const name = (/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line) as RegExpExecArray)[0];
      const labels: Record<string, string> = {};
      for (const match of line.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
        labels[match[1] as string] = match[2] as string;
      return { name, labels };
    });
}

describe.each(RUNTIMES)("metric labels under hostile input on %s", (runtime) => {
  let gateway: RunningGateway;

  beforeAll(async () => {
    gateway = await startGateway(runtime, {
      RATE_LIMIT_REQUESTS_PER_SEC: "100000",
      RATE_LIMIT_EVENTS_PER_SEC: "100000",
    });
  });
  afterAll(async () => {
    await gateway.stop("SIGKILL");
  });

  test("values clients choose never become label values; request series keep to the route table", async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const mark = `${MARKER}${round}`;
      const tenant = `${mark}-tenant`;
      const auth = { authorization: `Bearer ${await token(tenant, ["ingest", "publish", "subscribe"])}` };
      const answers = await Promise.all([
        fetch(`${gateway.url}/${mark}/path`),
        fetch(`${gateway.url}/v1/${mark}`, { method: "DELETE" }),
        fetch(`${gateway.url}/v1/events/${mark}`, { method: "PATCH", body: "{}" }),
        fetch(`${gateway.url}/v1/channels/${mark}/events?limit=5`, { headers: auth }),
        fetch(`${gateway.url}/v1/channels/${mark}/events?since=${mark}`, { headers: auth }),
        fetch(`${gateway.url}/v1/events?${mark}=1`, {
          method: "POST",
          headers: { ...auth, "content-type": "application/json", "idempotency-key": mark },
          body: JSON.stringify([
            { type: mark, data: {} },
            { type: "click", id: mark, key: mark, channel: mark, data: { element: mark } },
            { type: "click", channel: `${mark}/bad channel`, data: { element: mark } },
            { type: "click", data: { [mark]: 1 } },
          ]),
        }),
        fetch(`${gateway.url}/v1/publish`, {
          method: "POST",
          headers: { ...auth, "content-type": "application/json" },
          body: JSON.stringify({ channel: mark, data: { [mark]: mark } }),
        }),
        fetch(`${gateway.url}/v1/events`, {
          method: "POST",
          headers: { ...auth, "content-type": `application/${mark}` },
          body: "{}",
        }),
      ]);
      await Promise.all(answers.map((answer) => answer.arrayBuffer()));
      // Everything the gateway refused it refused with a status of its catalogue, never 5xx.
      for (const answer of answers) expect(answer.status).toBeLessThan(500);

      const socket = new TestSocket(`${gateway.wsUrl}?token=${auth.authorization.slice(7)}`);
      await socket.opened();
      await socket.next((frame) => frame.type === "connected");
      socket.send({ type: "subscribe", channel: mark, since: mark });
      socket.send({ type: "subscribe", channel: mark });
      socket.send({ type: mark, channel: mark });
      socket.send({ type: "publish", channel: mark, data: { n: 1 } });
      socket.send(mark);
      await socket.next((frame) => frame.type === "subscribed");
      socket.close();
      await socket.closed;
    }

    const response = await fetch(`${gateway.url}/metrics`);
    const text = await response.text();
    const all = samples(text);
    const carrying = all.filter(({ labels }) =>
      Object.values(labels).some((value) => value.includes(MARKER)),
    );
    expect(carrying).toEqual([]);
    const requests = all.filter(({ name }) => name === "gateway_http_requests_total");
    expect(requests.filter(({ labels }) => !ROUTES.has(labels.route as string))).toEqual([]);
    // One series per route, method and status the traffic above can reach: a few dozen, whatever ROUNDS is.
    expect(requests.length).toBeLessThan(40);

    const promtool = Bun.spawn(["promtool", "check", "metrics"], {
      stdin: new Blob([text]),
      stdout: "pipe",
      stderr: "pipe",
    });
    const problems =
      (await new Response(promtool.stdout).text()) + (await new Response(promtool.stderr).text());
    expect({ exit: await promtool.exited, problems }).toEqual({ exit: 0, problems: "" });
  });
});
