-- wrk script of scripts/loadbench: sends one start-up check after the other, tallies statuses.
--
--   wrk -tTHREADS ... -s scripts/loadbench.lua URL -- HEADER LICENSES_FILE PAUSE_MS THREADS \
--       LAG PATH=STATUS ...
--
-- One check is the PATH=STATUS steps in order (what the real check asked and was answered);
-- each check takes the next license number of LICENSES_FILE (one a line) and sends it in the
-- HEADER of each of its requests; each of the THREADS starts at another 1/THREADS of the file.
-- wrk gives a thread's next request to whichever of its connections is free, so the steps of
-- one check go out on different connections. The real client sends a step once the one before
-- is answered (through nginx, the second finds the license decision cached); so that the steps
-- do not overtake each other here, step k of a check goes out k x LAG checks after its first
-- step (LAG: twice the connections per thread), by when the answer to the first has almost
-- always come (scripts/loadbench counts in the server's log how often nginx asked per number).
-- PAUSE_MS > 0: a random pause of 0 to 2 x PAUSE_MS before each request (a paced load instead
-- of as fast as the answers come). A status no step expects is tallied as unexpected; done()
-- prints one line "LOADBENCH {json}" for scripts/loadbench.py.

local steps, expected, licenses, header, pause_ms, lag = {}, {}, {}, "", 0, 0
local n = 0
local threads = {}
statuses, unexpected = {}, {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  header, pause_ms = args[1], tonumber(args[3])
  for line in io.lines(args[2]) do
    if line ~= "" then table.insert(licenses, line) end
  end
  lag = tonumber(args[5])
  for i = 6, #args do
    local path, status = string.match(args[i], "^(.*)=(%d+)$")
    table.insert(steps, path)
    expected[tonumber(status)] = true
  end
  n = id * #steps * math.floor(#licenses / tonumber(args[4]))
  -- defined only when pausing: wrk looks for delay() after init(), and with it every request
  -- goes through a timer
  if pause_ms > 0 then
    math.randomseed(os.time() * 16 + id)
    delay = function() return math.random(0, 2 * pause_ms) end
  end
end

function request()
  local step = n % #steps
  local check = math.floor(n / #steps) - step * lag
  n = n + 1
  return wrk.format("GET", steps[step + 1], { [header] = licenses[check % #licenses + 1] })
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if not expected[status] then
    unexpected[status] = (unexpected[status] or 0) + 1
  end
end

local function json(tally)
  local parts = {}
  for status, count in pairs(tally) do
    parts[#parts + 1] = string.format('"%d": %d', status, count)
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

function done(summary, latency, requests)
  local all, bad = {}, {}
  for _, thread in ipairs(threads) do
    for k, v in pairs(thread:get("statuses")) do all[k] = (all[k] or 0) + v end
    for k, v in pairs(thread:get("unexpected")) do bad[k] = (bad[k] or 0) + v end
  end
  local e = summary.errors
  io.write(string.format(
    'LOADBENCH {"requests": %d, "us": %d, "p50": %d, "p99": %d, "p995": %d, "connect": %d, ' ..
    '"read": %d, "write": %d, "timeout": %d, "statuses": %s, "unexpected": %s}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.5), e.connect, e.read, e.write, e.timeout, json(all), json(bad)))
end
