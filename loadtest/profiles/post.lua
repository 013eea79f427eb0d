-- wrk script for POST /v1/events: EVENTS records per request (1 = one JSON
-- object, N > 1 = a JSON array of N), bearer token from BENCH_TOKEN. Prints one
-- line "wrk-result {json}" at the end for loadtest/bench/bench.ts to parse.
-- No per-response hook: a Lua call per response would cost wrk CPU.
local events = tonumber(os.getenv("EVENTS") or "1")
local token = os.getenv("BENCH_TOKEN") or ""
local event = '{"type":"page_view","data":{"url":"https://example.com/bench","title":"bench"}}'

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token
if events <= 1 then
  wrk.body = event
else
  wrk.body = "[" .. string.rep(event, events, ",") .. "]"
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'wrk-result {"requests":%d,"durationUs":%d,"bytes":%d,"non2xx":%d,"connectErrors":%d,"readErrors":%d,' ..
    '"writeErrors":%d,"timeouts":%d,"p50Us":%d,"p90Us":%d,"p99Us":%d,"maxUs":%d}\n',
    summary.requests, summary.duration, summary.bytes, errors.status, errors.connect, errors.read,
    errors.write, errors.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
