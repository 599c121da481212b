-- wrk script for tests/bench/analyst_load.py: every connection is an analyst
-- asking examples/analyst's questions in turn (POST /api/ask, one JSON body
-- a line in $ANALYST_BODIES); an answer counts only if it is a 200 with rows
-- (the server adds them only when a query ran).  done() prints one
-- ANALYST_LOAD line for the runner.
local threads = {}

function setup(thread)
    thread:set("id", #threads)
    table.insert(threads, thread)
end

function init(args)
    bodies = {}
    for line in io.lines(os.getenv("ANALYST_BODIES")) do
        bodies[#bodies + 1] = line
    end
    n = id * 17
    math.randomseed(id + 1)
    answered = 0
    failed = 0
end

-- $ANALYST_THINK_MS: an analyst reads the answer for 0.5 to 1.5 times this
-- long before the next question (0: asks again at once)
local think_ms = tonumber(os.getenv("ANALYST_THINK_MS") or "0")

function delay()
    if think_ms <= 0 then
        return 0
    end
    return math.floor(think_ms * (0.5 + math.random()))
end

function request()
    n = n + 1
    return wrk.format("POST", "/api/ask", { ["Content-Type"] = "application/json" },
                      bodies[(n % #bodies) + 1])
end

function response(status, headers, body)
    if status == 200 and body:find('"rows": [', 1, true) then
        answered = answered + 1
    else
        failed = failed + 1
    end
end

function done(summary, latency, requests)
    local answered, failed = 0, 0
    for _, t in ipairs(threads) do
        answered = answered + t:get("answered")
        failed = failed + t:get("failed")
    end
    local e = summary.errors
    io.write(string.format("ANALYST_LOAD requests=%d answered=%d failed=%d duration_us=%d " ..
                           "p50_us=%d p95_us=%d p99_us=%d max_us=%d socket_errors=%d\n",
                           summary.requests, answered, failed, summary.duration,
                           latency:percentile(50), latency:percentile(95), latency:percentile(99),
                           latency.max, e.connect + e.read + e.write + e.timeout + e.status))
end
