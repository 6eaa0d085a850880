-- Prints one machine-readable line at the end of a wrk run (wrk's own text stays for humans).
-- Optional first script argument: a per-connection think time in ms, for a fixed moderate rate.
local think_ms = 0

function init(args)
  think_ms = tonumber(args[1] or "0") or 0
end

function delay()
  return think_ms
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
