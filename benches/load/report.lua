-- wrk reporter: one JSON line the harness parses (wrk's own summary has no p99.9).
--
-- OUTPOST_BENCH_METHOD sends that method instead of GET; OUTPOST_BENCH_SPREAD=N appends a
-- random number from 1 to N to the path of each request (so /counter/o spreads over
-- /counter/o1 … /counter/oN). Without either, wrk sends its one precomputed request.
local method = os.getenv("OUTPOST_BENCH_METHOD")
local spread = tonumber(os.getenv("OUTPOST_BENCH_SPREAD") or "")
if method or spread then
  request = function()
    local path = wrk.path
    if spread then
      path = path .. math.random(spread)
    end
    return wrk.format(method or "GET", path)
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'JSON {"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
