-- wrk script for POST /v1/events with a fresh id on every record: EVENTS
-- records per request (a JSON array), bearer token from BENCH_TOKEN, ids
-- "<ID_PREFIX>-<request>-<n>" (so per-record deduplication sees new ids, the
-- case that writes). Prints "wrk-result {json}" like post.lua.
local events = tonumber(os.getenv("EVENTS") or "100")
local prefix = os.getenv("ID_PREFIX") or "bench"
local template = '{"type":"page_view","id":"' .. prefix .. '-%d-%d","data":{"url":"https://example.com/bench","title":"bench"}}'
local sent = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "")

function request()
  sent = sent + 1
  local records = {}
  for n = 1, events do records[n] = string.format(template, sent, n) end
  return wrk.format(nil, nil, nil, "[" .. table.concat(records, ",") .. "]")
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'wrk-result {"requests":%d,"non2xx":%d,"p50Us":%d,"p99Us":%d}\n',
    summary.requests, errors.status, latency:percentile(50), latency:percentile(99)))
end
