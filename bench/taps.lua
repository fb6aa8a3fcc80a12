-- wrk's script for the bench's taps (bench/load.py): each prebuilt request is sent once, over
-- whichever connection is free (as many in flight as wrk has connections), and each answer is
-- written as it comes: "<request id> <status> <sent> <answered> <body>", times in wall-clock
-- seconds. The request id (X-Request-Id, echoed by the api) pairs an answer with its request.
--   wrk -t1 -c<in flight> -d<cap> -s bench/taps.lua <url> -- <requests> <answers>
-- <requests>: for each request a line "<id> <length>", then its <length> raw bytes.
-- Once every request is answered, an empty "<answers>.done" says so; the bench then stops wrk.
local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *now);
]])
local CLOCK_REALTIME = 0
local clock = ffi.new("bench_timespec")

local function now()
  ffi.C.clock_gettime(CLOCK_REALTIME, clock)
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) * 1e-9
end

local requests, sent_at, answers, done_marker = {}, {}, nil, nil
local granted, sent, answered = 0, 0, 0

function init(args)
  local source = assert(io.open(args[1], "rb"))
  for line in function() return source:read("*l") end do
    local id, length = line:match("^(%S+) (%d+)$")
    requests[#requests + 1] = { id = id, raw = source:read(tonumber(length)) }
  end
  source:close()
  answers = assert(io.open(args[2], "w"))
  answers:setvbuf("line") -- a stopped wrk loses nothing already answered
  done_marker = args[2] .. ".done"
end

-- Called before each request a connection would send: the next one, or none (a day's wait,
-- until the bench stops wrk) once every request is given to a connection.
function delay()
  if granted < #requests then
    granted = granted + 1
    return 0
  end
  return 86400000
end

function request()
  if granted == 0 then
    -- wrk's check of the script, before any connection: how many requests one string holds
    return requests[1].raw
  end
  sent = sent + 1
  local tap = requests[sent]
  sent_at[tap.id] = now()
  return tap.raw
end

function response(status, headers, body)
  local answered_at = now()
  local id = headers["x-request-id"] or headers["X-Request-Id"] or "?"
  answers:write(
    string.format("%s %d %.6f %.6f %s\n", id, status, sent_at[id] or 0, answered_at,
      ((body or ""):gsub("\n", " ")))
  )
  answered = answered + 1
  if answered == #requests then
    answers:close()
    assert(io.open(done_marker, "w")):close()
    wrk.thread:stop()
  end
end
