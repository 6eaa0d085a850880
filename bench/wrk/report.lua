-- Prints one machine-readable line at the end of a wrk run (wrk's own text stays for humans).
-- Optional script arguments: a per-connection think time in ms, for a fixed moderate rate, and
-- "jitter" to draw each think time at random around that mean.
local think_ms = 0
local jitter = false

function init(args)
  think_ms = tonumber(args[1] or "0") or 0
  jitter = args[2] == "jitter"
  math.randomseed(os.time())
end

function delay()
  -- wrk opens every connection at once and schedules delays on a millisecond grid, so with a fixed
  -- think time the connections fall into step and the server sees bursts of them together. A think
  -- time drawn evenly from [think/2, 3*think/2] (same mean, same rate) keeps their arrivals apart.
  if jitter and think_ms > 1 then
    return math.random(math.floor(think_ms / 2), math.floor(think_ms * 3 / 2))
  end
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
