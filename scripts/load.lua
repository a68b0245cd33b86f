-- wrk script used by scripts/load.sh: posts signed GitHub push bodies, each request a body of its own (the
-- push with a unique top-level `em_load_id`) under its own X-GitHub-Delivery, signed per request with
-- HMAC-SHA256 through libcrypto (LuaJIT's ffi), so that every request is a new delivery the server must
-- authenticate and store: the same bytes again would be answered as a duplicate.
--
-- Arguments (after `--`): <body file> <webhook secret> <seconds to send for> <run id> <connections per thread>
--
-- After the sending time each connection, once its last answer is in, is parked (delay() returns a very long
-- delay) instead of sending again; when all of a thread's connections are parked the thread stops. So no
-- request is left unanswered when wrk exits, and the server's stored count can be compared exactly with the
-- 2xx count. wrk's own -d must be a little longer than the sending time.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } em_load_timespec;
int clock_gettime(int clk_id, em_load_timespec *tp);
]]
ffi.cdef [[
typedef struct em_load_evp_md EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len, const unsigned char *d, size_t n,
                    unsigned char *md, unsigned int *md_len);
]]
local function load_crypto()
  for _, name in ipairs({ "crypto", "libcrypto.so.3", "libcrypto.so.1.1" }) do
    local ok, lib = pcall(ffi.load, name)
    if ok then
      return lib
    end
  end
  error("libcrypto not found")
end
local crypto = load_crypto()
local digest = ffi.new("unsigned char[32]")
local digest_len = ffi.new("unsigned int[1]")

-- `sha256=<hex HMAC-SHA256 of body under key>`, as GitHub signs a delivery.
local function sign(key, body)
  crypto.HMAC(crypto.EVP_sha256(), key, #key, body, #body, digest, digest_len)
  local hex = {}
  for i = 0, digest_len[0] - 1 do
    hex[#hex + 1] = string.format("%02x", digest[i])
  end
  return "sha256=" .. table.concat(hex)
end

local CLOCK_MONOTONIC = 1
local ts = ffi.new("em_load_timespec")
local function now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

-- Main state: every thread, to read its counters in done().
local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

-- Thread state.
local secret, rest
local run_id, deadline, connections
local PARK_MS = 3600 * 1000
sent, accepted, duplicates, other_2xx, non_2xx, parked = 0, 0, 0, 0, 0, 0
started, stopped_at = 0, 0

function init(args)
  local f = assert(io.open(args[1], "rb"), "cannot open the body file")
  local body = f:read("*a")
  f:close()
  -- Everything after the body's opening brace: each request puts its own id before it.
  rest = assert(string.match(body, "^%s*{(.*)$"), "the body is not a JSON object")
  secret = args[2]
  local seconds = tonumber(args[3])
  run_id = args[4]
  connections = tonumber(args[5])
  started = now()
  deadline = started + seconds
end

-- Called before each request: no delay while sending, then each connection parks for good.
function delay()
  if now() < deadline then
    return 0
  end
  parked = parked + 1
  if parked >= connections then
    stopped_at = now()
    wrk.thread:stop()
  end
  return PARK_MS
end

function request()
  sent = sent + 1
  local id = run_id .. "-" .. tostring(tid) .. "-" .. tostring(sent)
  local body = '{"em_load_id":"' .. id .. '",' .. rest
  return wrk.format("POST", "/webhooks/github", {
    ["Content-Type"] = "application/json",
    ["User-Agent"] = "GitHub-Hookshot/load",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = id,
    ["X-Hub-Signature-256"] = sign(secret, body),
  }, body)
end

function response(status, headers, body)
  if status == 202 then
    accepted = accepted + 1
  elseif status == 200 and string.find(body, '"duplicate"', 1, true) then
    duplicates = duplicates + 1
  elseif status >= 200 and status < 300 then
    other_2xx = other_2xx + 1
  else
    non_2xx = non_2xx + 1
  end
end

function done(summary, latency, requests)
  local sum = { accepted = 0, duplicates = 0, other_2xx = 0, non_2xx = 0 }
  local first, last, unstopped = math.huge, 0, 0
  for _, t in ipairs(threads) do
    for k in pairs(sum) do
      sum[k] = sum[k] + (t:get(k) or 0)
    end
    first = math.min(first, t:get("started"))
    local s = t:get("stopped_at")
    if s == 0 then
      unstopped = unstopped + 1
    else
      last = math.max(last, s)
    end
  end
  local seconds = last - first
  if unstopped > 0 or seconds <= 0 then
    seconds = summary.duration / 1e6
  end
  local e = summary.errors
  local out = {
    { "threads_unstopped", unstopped },
    { "seconds", string.format("%.3f", seconds) },
    { "completed", summary.requests },
    { "accepted", sum.accepted },
    { "duplicates", sum.duplicates },
    { "other_2xx", sum.other_2xx },
    { "non_2xx", sum.non_2xx },
    { "errors_connect", e.connect },
    { "errors_read", e.read },
    { "errors_write", e.write },
    { "errors_timeout", e.timeout },
    { "latency_mean_us", string.format("%.0f", latency.mean) },
    { "latency_p50_us", latency:percentile(50) },
    { "latency_p90_us", latency:percentile(90) },
    { "latency_p99_us", latency:percentile(99) },
    { "latency_p999_us", latency:percentile(99.9) },
    { "latency_max_us", latency.max },
  }
  for _, kv in ipairs(out) do
    io.write(string.format("EM_LOAD %s=%s\n", kv[1], tostring(kv[2])))
  end
end
