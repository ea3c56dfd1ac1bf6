-- wrk script: every request carries a Host header picked at random among 10,000 virtual hosts
-- vh1.bench.test .. vh10000.bench.test.  The requests are formatted once, in init(), so the
-- client spends its time sending them, not building strings.
local hosts = tonumber(os.getenv("BENCH_VHOSTS") or "10000")
local requests = {}

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  for i = 1, hosts do
    requests[i] = wrk.format("GET", "/", { ["Host"] = "vh" .. i .. ".bench.test" })
  end
end

function request()
  return requests[math.random(hosts)]
end
