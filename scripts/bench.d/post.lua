-- wrk script for scripts/bench: POST a GitHub push with its headers, and
-- print one machine-readable RESULT line at the end.
--
-- Inputs come from the environment:
--   BENCH_BODY, BENCH_SIG   one body and its X-Hub-Signature-256: the request
--                           is set at the top level, so wrk formats it once
--                           and replays it (the load generator costs the same
--                           for every target);
--   BENCH_BODY, BENCH_SWH_SIG  instead of BENCH_SIG, a Standard Webhooks
--                           delivery: webhook-id, webhook-timestamp (when
--                           wrk loads this script, so each flood is fresh)
--                           and this webhook-signature;
--   BENCH_BODIES, BENCH_COUNT  instead, a folder with 1.json, 1.sig, ...
--                           COUNT.json, COUNT.sig: requests cycle through
--                           them, so hooks in flight together all differ;
--   BENCH_CLOSE             set: every request says `Connection: close`, so
--                           each is a new connection (over TLS, a new
--                           handshake).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "GitHub-Hookshot/bench"
wrk.headers["X-GitHub-Event"] = "push"
wrk.headers["X-GitHub-Delivery"] = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
if os.getenv("BENCH_CLOSE") then
   wrk.headers["Connection"] = "close"
end

local function slurp(path)
   local f = assert(io.open(path, "rb"))
   local s = f:read("*a")
   f:close()
   return s
end

local count = tonumber(os.getenv("BENCH_COUNT") or "0")
if count > 0 then
   local dir = os.getenv("BENCH_BODIES")
   local requests = {}
   local next = 0

   function init(args)
      for i = 1, count do
         local headers = {}
         for name, value in pairs(wrk.headers) do
            headers[name] = value
         end
         headers["X-Hub-Signature-256"] = slurp(dir .. "/" .. i .. ".sig"):gsub("%s+$", "")
         requests[i] = wrk.format(nil, nil, headers, slurp(dir .. "/" .. i .. ".json"))
      end
   end

   function request()
      next = next % count + 1
      return requests[next]
   end
elseif os.getenv("BENCH_SWH_SIG") then
   wrk.body = slurp(os.getenv("BENCH_BODY"))
   wrk.headers["webhook-id"] = "msg_bench"
   wrk.headers["webhook-timestamp"] = tostring(os.time())
   wrk.headers["webhook-signature"] = os.getenv("BENCH_SWH_SIG")
else
   wrk.body = slurp(os.getenv("BENCH_BODY"))
   wrk.headers["X-Hub-Signature-256"] = os.getenv("BENCH_SIG")
end

function done(summary, latency, requests)
   local e = summary.errors
   local seconds = summary.duration / 1e6
   io.write(string.format(
      "RESULT requests=%d rps=%.0f p50_us=%d p99_us=%d max_us=%d non2xx=%d socket_errors=%d\n",
      summary.requests, summary.requests / seconds,
      latency:percentile(50), latency:percentile(99), latency.max,
      e.status, e.connect + e.read + e.write + e.timeout))
end
