// k6 open-model load test for POST /v1/events: single events and 100-event
// batches at a constant arrival rate. Thresholds fail the run: errors and
// checks always; latency only with -e P99_MS=<ms> (speed is measured by the
// benchmark, loadtest/bench, not asserted while other tests share the cores).
//   bun start    # a gateway in dev mode on :8080; elsewhere sign TOKEN with its JWT_SECRET
//   k6 run -e TOKEN="$(bun run --silent token -- --tenant loadtest --scope ingest)" loadtest/ingest.js
// Settings (-e NAME=value):
//   TOKEN        a token with scope ingest (required)
//   BASE_URL     the gateway (default http://127.0.0.1:8080)
//   DURATION     how long each scenario runs (default 30s)
//   SINGLE_RATE  single-event requests per second (default 300)
//   BATCH_RATE   100-event requests per second (default 30): 3,300 events/s by default, within
//                the gateway's default budgets (RATE_LIMIT_EVENTS_PER_SEC, RATE_LIMIT_REQUESTS_PER_SEC)
//   P99_MS       adds p99 thresholds: this for single events, twice it for batches (default: none)
// Any answer but the 202 fails its check and counts in http_req_failed; the summary's
// rate_limited_429 and overloaded_503 say how many of those were the gateway pushing back
// (429: over a budget; 503: Kafka slow or away), as against errors.
import { check } from "k6";
import http from "k6/http";
import { Counter } from "k6/metrics";

if (!__ENV.TOKEN)
  throw new Error("set -e TOKEN=<a token with scope ingest> (see the top of loadtest/ingest.js)");
const BASE_URL = __ENV.BASE_URL || "http://127.0.0.1:8080";
const DURATION = __ENV.DURATION || "30s";
const SINGLE_RATE = Number(__ENV.SINGLE_RATE || 300);
const BATCH_RATE = Number(__ENV.BATCH_RATE || 30);
const P99_MS = __ENV.P99_MS ? Number(__ENV.P99_MS) : undefined;

export const options = {
  discardResponseBodies: false,
  scenarios: {
    single: {
      executor: "constant-arrival-rate",
      exec: "single",
      rate: SINGLE_RATE,
      timeUnit: "1s",
      duration: DURATION,
      preAllocatedVUs: 20,
      maxVUs: 100,
    },
    batch100: {
      executor: "constant-arrival-rate",
      exec: "batch",
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
    ...(P99_MS === undefined
      ? {}
      : {
          "http_req_duration{scenario:single}": [`p(99)<${P99_MS}`],
          "http_req_duration{scenario:batch100}": [`p(99)<${P99_MS * 2}`],
        }),
  },
};

const params = {
  headers: { authorization: `Bearer ${__ENV.TOKEN}`, "content-type": "application/json" },
};

function record(i) {
  return {
    type: "page_view",
    data: { url: `https://example.com/k6/${__VU}/${__ITER}/${i}`, duration_ms: i },
  };
}

const rateLimited = new Counter("rate_limited_429");
const overloaded = new Counter("overloaded_503");

/** Counts the gateway's pushback apart from other failures (every response adds, so both show in the summary). */
function countPushback(response) {
  rateLimited.add(response.status === 429 ? 1 : 0);
  overloaded.add(response.status === 503 ? 1 : 0);
}

export function single() {
  const response = http.post(`${BASE_URL}/v1/events`, JSON.stringify(record(0)), params);
  countPushback(response);
  check(response, { "202 accepted": (r) => r.status === 202 && r.json("accepted") === 1 });
}

const BATCH = Array.from({ length: 100 }, (_, i) => i);

export function batch() {
  const response = http.post(`${BASE_URL}/v1/events`, JSON.stringify(BATCH.map(record)), params);
  countPushback(response);
  check(response, { "202 accepted 100": (r) => r.status === 202 && r.json("accepted") === 100 });
}
