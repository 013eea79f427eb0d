// k6 fan-out scenario: SUBSCRIBERS WebSocket clients subscribe to one channel over
// /v1/ws, one VU publishes MESSAGES events to it with POST /v1/publish, and every
// subscriber must receive every one. Measures publish→delivery latency (the time
// from sending the publish to the event frame reaching a subscriber).
// Thresholds fail the run: a message lost to any subscriber, a failed publish or
// check, delivery p95 over DELIVERY_P95_MS. docs/load-testing.md has more.
//   bun start    # a gateway in dev mode on :8080; elsewhere sign TOKEN with its JWT_SECRET
//   k6 run -e TOKEN="$(bun run --silent token -- --tenant loadtest --scope subscribe,publish)" loadtest/fanout.js
// Settings (-e NAME=value):
//   TOKEN            a token with scopes subscribe and publish (required)
//   BASE_URL         the gateway (default http://127.0.0.1:8080); WebSockets go to its /v1/ws
//   SUBSCRIBERS      WebSocket clients on the channel (default 20)
//   MESSAGES         events published (default 30)
//   PUBLISH_RATE     events published a second (default 10: 3 s of publishing by default)
//   DELIVERY_P95_MS  the delivery p95 threshold in milliseconds (default 1000)
// The publisher starts once presence shows every subscriber on the channel, so a message
// missed by a subscriber is lost, not early, and ends with an end mark after which a
// subscriber counts what it lacks as lost. A publish answered with pushback (429 or 503
// with Retry-After) is sent again after Retry-After (at most 5 s), up to 3 times.
import { check, sleep } from "k6";
import { WebSocket } from "k6/experimental/websockets";
import http from "k6/http";
import { Counter, Rate, Trend } from "k6/metrics";
import { clearTimeout, setTimeout } from "k6/timers";

if (!__ENV.TOKEN)
  throw new Error(
    "set -e TOKEN=<a token with scopes subscribe and publish> (see the top of loadtest/fanout.js)",
  );
const BASE_URL = __ENV.BASE_URL || "http://127.0.0.1:8080";
const SUBSCRIBERS = Number(__ENV.SUBSCRIBERS || 20);
const MESSAGES = Number(__ENV.MESSAGES || 30);
const PUBLISH_RATE = Number(__ENV.PUBLISH_RATE || 10);
const DELIVERY_P95_MS = Number(__ENV.DELIVERY_P95_MS || 1000);
/** How long the publisher waits for every subscriber to show in presence. */
const PRESENCE_WAIT_MS = 10_000;
/** How long a subscriber waits past presence and publishing for the end mark before counting what it lacks lost. */
const DELIVERY_WAIT_MS = 5_000;
const RETRY_AFTER_MAX_SEC = 5;
/** The seq of the publisher's last message, after every other: a subscriber given it has all it will get. */
const END = -1;

export const options = {
  scenarios: {
    subscribers: {
      executor: "per-vu-iterations",
      exec: "subscriber",
      vus: SUBSCRIBERS,
      iterations: 1,
      maxDuration: "2m",
    },
    publisher: {
      executor: "per-vu-iterations",
      exec: "publisher",
      vus: 1,
      iterations: 1,
      maxDuration: "2m",
    },
  },
  thresholds: {
    fanout_lost: ["count==0"],
    fanout_delivery: [`p(95)<${DELIVERY_P95_MS}`],
    checks: ["rate==1"],
    http_req_failed: ["rate==0"],
  },
};

const delivery = new Trend("fanout_delivery", true);
const delivered = new Counter("fanout_delivered");
const lost = new Counter("fanout_lost");
const pushback = new Rate("gateway_pushback");

// A publish's 429 or 503 with Retry-After is pushback, sent again (below), not a failed request.
http.setResponseCallback(http.expectedStatuses(200, 202, 429, 503));

const headers = { authorization: `Bearer ${__ENV.TOKEN}` };

/** One channel for the run: setup runs once and hands it to every VU. */
export function setup() {
  return { channel: `k6-fanout-${Date.now()}` };
}

/** Subscribes, records each message's delivery, and closes once it has them all, the end mark came, or it gives up. */
export function subscriber({ channel }) {
  const ws = new WebSocket(`${BASE_URL.replace(/^http/, "ws")}/v1/ws`, null, { headers });
  const received = new Set();
  let subscribed = false;
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    check(subscribed, { "subscribed to the channel": (s) => s });
    lost.add(MESSAGES - received.size);
    ws.close();
  };
  const timer = setTimeout(finish, PRESENCE_WAIT_MS + (MESSAGES / PUBLISH_RATE) * 1000 + DELIVERY_WAIT_MS);
  ws.onopen = () => ws.send(JSON.stringify({ type: "subscribe", channel }));
  ws.onmessage = (message) => {
    const frame = JSON.parse(message.data);
    if (frame.type === "subscribed") {
      subscribed = true;
    } else if (frame.type === "event" && frame.channel === channel && frame.data.seq === END) {
      finish();
    } else if (frame.type === "event" && frame.channel === channel && !received.has(frame.data.seq)) {
      received.add(frame.data.seq);
      delivery.add(Date.now() - frame.data.sentAt);
      delivered.add(1);
      if (received.size === MESSAGES) finish();
    } else if (frame.type === "error") {
      check(frame, { "no error frame": () => false });
      finish();
    }
  };
  ws.onerror = () => {
    check(null, { "no WebSocket error": () => false });
    finish();
  };
}

/** How many sockets presence shows on the channel. */
function present(channel) {
  const response = http.get(`${BASE_URL}/v1/channels/${channel}/presence`, { headers });
  if (response.status !== 200) return 0;
  return response.json("members").reduce((sum, member) => sum + member.connections, 0);
}

/** Waits until every subscriber is on the channel, then publishes MESSAGES at PUBLISH_RATE, then the end mark. */
export function publisher({ channel }) {
  const deadline = Date.now() + PRESENCE_WAIT_MS;
  while (present(channel) < SUBSCRIBERS && Date.now() < deadline) sleep(0.1);
  if (check(present(channel), { "every subscriber on the channel": (n) => n >= SUBSCRIBERS }))
    for (let seq = 0; seq < MESSAGES; seq++) {
      const started = Date.now();
      publish(channel, seq);
      sleep(Math.max(0, 1 / PUBLISH_RATE - (Date.now() - started) / 1000));
    }
  // A channel's events arrive in order: a subscriber given the end has been given all published before it.
  publish(channel, END);
}

/** Publishes one message; pushback (a 429 or 503 with Retry-After) is waited out and sent again, 3 times at most. */
function publish(channel, seq) {
  const params = { headers: { ...headers, "content-type": "application/json" }, responseType: "text" };
  for (let attempt = 0; ; attempt++) {
    const body = JSON.stringify({ channel, data: { seq, sentAt: Date.now() } });
    const response = http.post(`${BASE_URL}/v1/publish`, body, params);
    const retryAfter = response.headers["Retry-After"];
    const pushedBack = (response.status === 429 || response.status === 503) && retryAfter !== undefined;
    pushback.add(pushedBack);
    if (!pushedBack || attempt === 3) {
      check(response, { "202 published": (r) => r.status === 202 });
      return;
    }
    sleep(Math.min(Number(retryAfter) || 1, RETRY_AFTER_MAX_SEC));
  }
}
