-- wrk script of the benchmark suite: sendMessage / sendMessages, or the plain floor endpoint.
--
--   wrk -t2 -c64 -d10s --latency --timeout 10s -s bench/wrk/send.lua URL -- key=... [options]
--
-- Options (after `--`, key=value):
--   key=KEY        API key (Authorization: Bearer KEY); empty for the plain floor endpoint
--   path=/graphql  request path
--   batch=0        0: one sendMessage per request; N: one sendMessages call with N inputs
--   area=415       area code of the generated recipients (+1 AREA NXXXXXX)
--   offset=0       first recipient index; every recipient of a run is unique: thread t of T
--                  uses offset + t + k*T (k = 0, 1, ...), batches take consecutive runs
--   rate=0         0: full speed; R > 0: pace the whole run to R requests/s (see delay())
--   expect=...     substring one accepted item contains (counted in response())
--
-- Environment: BENCH_ADDRS="127.0.0.1:P1,127.0.0.1:P2" spreads the threads over several
-- API processes (thread i -> address i mod n); unset: the URL's address.
--
-- done() prints one line `WRK_JSON {...}` with requests, duration, latency percentiles (us),
-- error counts, non-2xx, and how many items the responses accepted.

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_index", thread_count - 1)
  local addrs = os.getenv("BENCH_ADDRS")
  if addrs and addrs ~= "" then
    local list = {}
    for host, port in string.gmatch(addrs, "([^,:]+):(%d+)") do
      list[#list + 1] = { host, port }
    end
    if #list > 0 then
      local pick = list[((thread_count - 1) % #list) + 1]
      thread.addr = wrk.lookup(pick[1], pick[2])[1]
    end
  end
  table.insert(threads, thread)
end

-- Per-thread state (each wrk thread has its own Lua state).
local counter = 0
local stride = 1
local index = 0
local batch = 0
local area = "415"
local offset = 0
local expect = "MessageAccepted"
-- Globals on purpose: done() reads them with thread:get().
accepted = 0
responses_ok = 0
responses_bad = 0
first_bad = ""
local prefix, suffix, item_prefix, item_suffix

local SENDER = "+14155550100"
local BODY = "Benchmark message: your code is 123456"

local function recipient(n)
  -- NANP: +1 AREA then a 7-digit subscriber number whose exchange starts with 2..9.
  return "+1" .. area .. string.format("%07d", 2000000 + (n % 8000000))
end

local function item(n)
  return item_prefix .. recipient(n) .. item_suffix
end

-- Pacing: a per-thread schedule of absolute send slots (LuaJIT ffi clock). A connection that
-- is ready takes the next slot and waits for it, so the offered rate stays at `rate` as long
-- as enough connections are free; slots missed while every connection was busy are sent at
-- once (catch-up), like a fixed-rate generator would.
local ffi_ok, ffi = pcall(require, "ffi")
if ffi_ok then
  pcall(ffi.cdef, [[
    typedef struct { long tv_sec; long tv_usec; } bench_timeval;
    int gettimeofday(bench_timeval *tv, void *tz);
  ]])
end
local tv = ffi_ok and ffi.new("bench_timeval") or nil

local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end

local interval_ms = 0
local next_slot = nil

local function paced_delay()
  local now = now_ms()
  if next_slot == nil then
    next_slot = now
  end
  local slot = next_slot
  next_slot = next_slot + interval_ms
  local wait = slot - now
  if wait < 0 then
    return 0
  end
  return wait
end

function init(args)
  local opts = {}
  for _, arg in ipairs(args) do
    local k, v = string.match(arg, "^([%w_]+)=(.*)$")
    if k then
      opts[k] = v
    end
  end
  -- args[0] is unused by wrk (it starts at 1); be lenient anyway.
  if args[0] then
    local k, v = string.match(args[0], "^([%w_]+)=(.*)$")
    if k then
      opts[k] = v
    end
  end
  index = thread_index or 0
  stride = tonumber(opts.threads or "0") or 0
  if stride <= 0 then
    stride = 1
  end
  batch = tonumber(opts.batch or "0") or 0
  area = opts.area or "415"
  offset = tonumber(opts.offset or "0") or 0
  if opts.expect ~= nil and opts.expect ~= "" then
    expect = opts.expect
  end
  wrk.method = "POST"
  wrk.path = opts.path or "/graphql"
  wrk.headers["Content-Type"] = "application/json"
  if opts.key and opts.key ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. opts.key
  end

  item_prefix = '{"channel":"SMS","from":"' .. SENDER .. '","to":"'
  item_suffix = '","body":"' .. BODY .. '"}'
  if batch > 0 then
    prefix = '{"query":"mutation B($inputs: [SendMessageInput!]!) { sendMessages(inputs: '
      .. '$inputs) { __typename ... on MessageAccepted { message { id } } } }",'
      .. '"variables":{"inputs":['
    suffix = "]}}"
  else
    prefix = '{"query":"mutation S($input: SendMessageInput!) { sendMessage(input: $input) '
      .. '{ __typename ... on MessageAccepted { message { id status } } } }",'
      .. '"variables":{"input":'
    suffix = "}}"
  end

  local rate = tonumber(opts.rate or "0") or 0
  if rate > 0 then
    if not ffi_ok then
      -- No clock: fall back to a fixed pause per request (closed loop; rate is approximate).
      local conns = tonumber(opts.connections or "64") or 64
      local fixed = conns * 1000 / rate
      delay = function()
        return fixed
      end
    else
      interval_ms = 1000 * stride / rate
      delay = paced_delay
    end
  end
end

function request()
  local n = offset
  local body
  if batch > 0 then
    -- Batch k of thread t covers recipients offset + (k*T + t)*batch .. +batch-1.
    local first = offset + (counter * stride + index) * batch
    local parts = {}
    for i = 0, batch - 1 do
      parts[i + 1] = item(first + i)
    end
    body = prefix .. table.concat(parts, ",") .. suffix
  else
    n = offset + counter * stride + index
    body = prefix .. item(n) .. suffix
  end
  counter = counter + 1
  return wrk.format(nil, nil, nil, body)
end

local function count(haystack, needle)
  local found, from = 0, 1
  while true do
    local s, e = string.find(haystack, needle, from, true)
    if not s then
      return found
    end
    found = found + 1
    from = e + 1
  end
end

function response(status, headers, body)
  local n = 0
  if status == 200 then
    n = count(body, expect)
  end
  local wanted = batch > 0 and batch or 1
  if n >= wanted then
    responses_ok = responses_ok + 1
  else
    responses_bad = responses_bad + 1
    if first_bad == "" then
      first_bad = "HTTP " .. status .. ": " .. string.sub(body or "", 1, 400)
    end
  end
  accepted = accepted + n
end

local function json_string(s)
  s = string.gsub(s, "[%c\"\\]", function(c)
    if c == '"' then
      return '\\"'
    elseif c == "\\" then
      return "\\\\"
    end
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. s .. '"'
end

function done(summary, latency, requests)
  local total_accepted, total_ok, total_bad, bad_sample = 0, 0, 0, ""
  for _, thread in ipairs(threads) do
    total_accepted = total_accepted + (thread:get("accepted") or 0)
    total_ok = total_ok + (thread:get("responses_ok") or 0)
    total_bad = total_bad + (thread:get("responses_bad") or 0)
    local sample = thread:get("first_bad") or ""
    if bad_sample == "" and sample ~= "" then
      bad_sample = sample
    end
  end
  local e = summary.errors
  local out = {
    '"requests":' .. summary.requests,
    '"duration_us":' .. summary.duration,
    '"bytes":' .. summary.bytes,
    '"errors_connect":' .. e.connect,
    '"errors_read":' .. e.read,
    '"errors_write":' .. e.write,
    '"errors_timeout":' .. e.timeout,
    '"non_2xx":' .. e.status,
    '"accepted":' .. total_accepted,
    '"responses_ok":' .. total_ok,
    '"responses_bad":' .. total_bad,
    '"first_bad":' .. json_string(bad_sample),
    '"latency_min_us":' .. latency.min,
    '"latency_max_us":' .. latency.max,
    '"latency_mean_us":' .. latency.mean,
    '"latency_stdev_us":' .. latency.stdev,
    '"latency_p50_us":' .. latency:percentile(50),
    '"latency_p90_us":' .. latency:percentile(90),
    '"latency_p99_us":' .. latency:percentile(99),
    '"latency_p999_us":' .. latency:percentile(99.9),
  }
  io.write("WRK_JSON {" .. table.concat(out, ",") .. "}\n")
end
