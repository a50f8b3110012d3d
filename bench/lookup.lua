-- wrk script of the bench's loadgen phase: POST /query with a random
-- primary-key lookup, in the body shape of the original Flask tool (the same
-- script drives Flask and querygate's bridge, so both get the same load).
--   wrk ... -s bench/lookup.lua URL -- ROWS BODY
-- BODY is a JSON template in which %d stands for an id from 1 to ROWS. done()
-- prints one line of exact counts and percentiles (µs) for bench/generators.ts.
local rows = 100000
local body = '{"query":"select id, label, amount from bench_lookup where id = %d"}'

function init(args)
  rows = tonumber(args[1]) or rows
  body = args[2] or body
end

wrk.method = "POST"
wrk.headers["content-type"] = "application/json"

function request()
  return wrk.format(nil, "/query", nil, string.format(body, math.random(1, rows)))
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "wrk-result requests=%d duration_us=%d p50_us=%d p99_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
