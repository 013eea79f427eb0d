// k6 open-model load test for POST /v1/events: single events and 100-event
// batches at a constant arrival rate. Thresholds fail the run: real failures
// and checks always, too much pushback (MAX_PUSHBACK); latency only with
// -e P99_MS=<ms> (speed is measured by the benchmark, loadtest/bench, not
// asserted while other tests share the cores). docs/load-testing.md has more.
//   bun start    # a gateway in dev mode on :8080; elsewhere sign TOKEN with its JWT_SECRET
//   k6 run -e TOKEN="$(bun run --silent token -- --tenant loadtest --scope ingest)" loadtest/ingest.js
// Settings (-e NAME=value):
//   TOKEN        a token with scope ingest (required)
//   BASE_URL     the gateway (default http://127.0.0.1:8080)
//   DURATION     how long each scenario runs (default 30s)
//   SINGLE_RATE  single-event requests per second (default 300)
//   BATCH_RATE   100-event requests per second (default 30): 3,300 events/s by default, within
//                the gateway's default budgets (RATE_LIMIT_EVENTS_PER_SEC, RATE_LIMIT_REQUESTS_PER_SEC)
//   MAX_PUSHBACK the largest share of answers that may be pushback, 0 to 1 (default 0.5)
//   P99_MS       adds p99 thresholds: this for single events, twice it for batches (default: none)
// Pushback is the gateway refusing load as it should: a 429 (over a budget) or a 503 (Kafka slow
// or away, the instance overloaded) that carries Retry-After. It is not a failure: it counts in
// gateway_pushback (and rate_limited_429 or overloaded_503), and the VU waits Retry-After (at
// most 5 s) before its next request. Any other answer but the 202, a 429 or 503 without
// Retry-After included, fails its check; all but 202, 429 and 503 count in http_req_failed too.
import { check, sleep } from "k6";
import http from "k6/http";
import { Counter, Rate } from "k6/metrics";

if (!__ENV.TOKEN)
  throw new Error("set -e TOKEN=<a token with scope ingest> (see the top of loadtest/ingest.js)");
const BASE_URL = __ENV.BASE_URL || "http://127.0.0.1:8080";
const DURATION = __ENV.DURATION || "30s";
const SINGLE_RATE = Number(__ENV.SINGLE_RATE || 300);
const BATCH_RATE = Number(__ENV.BATCH_RATE || 30);
const MAX_PUSHBACK = Number(__ENV.MAX_PUSHBACK || 0.5);
const P99_MS = __ENV.P99_MS ? Number(__ENV.P99_MS) : undefined;
/** A VU told to wait longer waits this long: an hour's Retry-After would end the run's sending. */
const RETRY_AFTER_MAX_SEC = 5;

export const options = {
  discardResponseBodies: false,
  scenarios: {
    single_events: {
      executor: "constant-arrival-rate",
      exec: "singleEvent",
      rate: SINGLE_RATE,
      timeUnit: "1s",
      duration: DURATION,
      preAllocatedVUs: 20,
      maxVUs: 100,
    },
    batches_of_100: {
      executor: "constant-arrival-rate",
      exec: "batchOf100",
      rate: BATCH_RATE,
      timeUnit: "1s",
      duration: DURATION,
      preAllocatedVUs: 10,
      maxVUs: 50,
    },
  },
  thresholds: {
    http_req_failed: ["rate<0.01"],
    checks: ["rate>0.99"],
    gateway_pushback: [`rate<=${MAX_PUSHBACK}`],
    ...(P99_MS === undefined
      ? {}
      : {
          "http_req_duration{scenario:single_events}": [`p(99)<${P99_MS}`],
          "http_req_duration{scenario:batches_of_100}": [`p(99)<${P99_MS * 2}`],
        }),
  },
};

// 429 and 503 are not failed requests in http_req_failed; the checks below fail those without Retry-After.
http.setResponseCallback(http.expectedStatuses(202, 429, 503));

const params = {
  headers: { authorization: `Bearer ${__ENV.TOKEN}`, "content-type": "application/json" },
};

function record(i) {
  return {
    type: "page_view",
    data: { url: `https://example.com/k6/${__VU}/${__ITER}/${i}`, duration_ms: i },
  };
}

const pushback = new Rate("gateway_pushback");
const rateLimited = new Counter("rate_limited_429");
const overloaded = new Counter("overloaded_503");

/**
 * Checks one answer: pushback (a 429 or 503 with Retry-After) is counted and waited out,
 * anything else must be a 202 that accepted all `records`.
 */
function checkAnswer(response, records) {
  const retryAfter = response.headers["Retry-After"];
  const pushedBack = (response.status === 429 || response.status === 503) && retryAfter !== undefined;
  pushback.add(pushedBack);
  rateLimited.add(pushedBack && response.status === 429 ? 1 : 0);
  overloaded.add(pushedBack && response.status === 503 ? 1 : 0);
  if (pushedBack) {
    const seconds = Number(retryAfter);
    sleep(Number.isFinite(seconds) && seconds >= 0 ? Math.min(seconds, RETRY_AFTER_MAX_SEC) : 1);
    return;
  }
  check(response, {
    [`202 accepted ${records}`]: (r) => r.status === 202 && r.json("accepted") === records,
  });
}

export function singleEvent() {
  checkAnswer(http.post(`${BASE_URL}/v1/events`, JSON.stringify(record(0)), params), 1);
}

const BATCH = Array.from({ length: 100 }, (_, i) => i);

export function batchOf100() {
  checkAnswer(http.post(`${BASE_URL}/v1/events`, JSON.stringify(BATCH.map(record)), params), 100);
}
