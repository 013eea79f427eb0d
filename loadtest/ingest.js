// k6 open-model load test for POST /v1/events: single events and 100-event
// batches at a constant arrival rate. Thresholds fail the run: errors and
// checks always; latency only with -e P99_MS=<ms> (speed is measured by the
// benchmark, loadtest/bench, not asserted while other tests share the cores).
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e TOKEN=... loadtest/ingest.js
import { check } from "k6";
import http from "k6/http";

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

export function single() {
  const response = http.post(`${BASE_URL}/v1/events`, JSON.stringify(record(0)), params);
  check(response, { "202 accepted": (r) => r.status === 202 && r.json("accepted") === 1 });
}

const BATCH = Array.from({ length: 100 }, (_, i) => i);

export function batch() {
  const response = http.post(`${BASE_URL}/v1/events`, JSON.stringify(BATCH.map(record)), params);
  check(response, { "202 accepted 100": (r) => r.status === 202 && r.json("accepted") === 100 });
}
