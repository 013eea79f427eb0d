// Closed-model k6 load for benchmarks: VUS virtual users post one event each,
// back to back, for DURATION. Reports http_reqs rate in the summary export.
import { check } from "k6";
import http from "k6/http";

export const options = {
  vus: Number(__ENV.VUS || 32),
  duration: __ENV.DURATION || "8s",
  discardResponseBodies: true,
};

const params = { headers: { authorization: `Bearer ${__ENV.TOKEN}`, "content-type": "application/json" } };
const body = JSON.stringify({ type: "page_view", data: { url: "https://example.com/bench" } });
const url = `${__ENV.BASE_URL}/v1/events${__ENV.QUERY || ""}`;

export default function () {
  check(http.post(url, body, params), { 202: (r) => r.status === 202 });
}
