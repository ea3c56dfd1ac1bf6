#!/usr/bin/env python3
"""Runs the measurements of bench/run.sh against proxies that are already running, and prints
the comparison table.  Standard library only; wrk does the HTTP/1.1 load, h2load the HTTP/2.

    measure.py run TARGETS.json RESULTS.json PHASE
                                               one phase (throughput, h2, idle, websocket,
                                               transfer) against freshly started proxies;
                                               results accumulate in RESULTS.json
    measure.py table RESULTS.json [OUT.md]     the table, on stdout and into OUT.md

TARGETS.json (written by run.sh):
    {"proxies": [{"name": "hipache", "port": 8080, "pid": 123, "tls_port": 8443,
                  "h2c_port": 8080}, ...],
     "redis_port": 6379, "backends": ["http://127.0.0.1:9001", ...],
     "sink": "http://127.0.0.1:9003", "wsecho": "http://127.0.0.1:9004",
     "transfer_bytes": 1073741824, "lua": "bench/vhosts.lua"}

Settings come from the environment (see bench/README.md): BENCH_ROUNDS, BENCH_SECONDS,
BENCH_QUICK, BENCH_IDLE_CONNS, BENCH_WS_TUNNELS, BENCH_WS_WINDOW, BENCH_VHOSTS,
BENCH_ROUTE_SAMPLES.

Beside it: measure_metrics.py (the measurements), measure_table.py (the table), measure_proc.py
(/proc), measure_clients.py (HTTP and RESP clients), measure_settings.py (the settings).
"""

import json
import os
import statistics
import sys

from measure_clients import HttpConn, Redis
from measure_metrics import (download_test, idle_test, route_latency, run_h2load, run_wrk,
                             upload_test, warm_backends, ws_finish_handshake, ws_open, ws_test)
from measure_proc import alive, cpu_times_tree, rss_tree
from measure_settings import (H2_CONNECTIONS, H2_STREAMS, IDLE_CONNS, QUICK, ROUNDS,
                              ROUTE_SAMPLES, SECONDS, SMALL_HOST, UPLOAD_HOST, VHOSTS,
                              WRK_CONNECTIONS, WS_HOST, WS_TUNNELS, WS_WINDOW, log)
from measure_table import render


# --------------------------------------------------------------------------- the whole run

def check_routes(targets):
    """Fails early, with a readable message, when a proxy does not route what it should."""
    for p in targets["proxies"]:
        http = HttpConn(p["port"])
        for host, path in ((SMALL_HOST, "/"), ("vh1.bench.test", "/"),
                           ("vh%d.bench.test" % VHOSTS, "/")):
            status, body = http.request(host, path)
            if status != 200 or body != b"ok":
                raise SystemExit("%s: GET %s (Host %s) answered %d %r"
                                 % (p["name"], path, host, status, body[:200]))
        http.close()
        s = ws_open(p["port"])
        ws_finish_handshake(s)
        s.close()


def load_redis(targets):
    redis = Redis(targets["redis_port"])
    b = targets["backends"]
    cmds = [("DEL", "frontend:" + SMALL_HOST), ("RPUSH", "frontend:" + SMALL_HOST, "bench", *b),
            ("DEL", "frontend:" + UPLOAD_HOST), ("RPUSH", "frontend:" + UPLOAD_HOST, "upload",
                                                 targets["sink"]),
            ("DEL", "frontend:" + WS_HOST), ("RPUSH", "frontend:" + WS_HOST, "ws",
                                             targets["wsecho"])]
    for i in range(1, VHOSTS + 1):
        host = "vh%d.bench.test" % i
        cmds.append(("DEL", "frontend:" + host))
        cmds.append(("RPUSH", "frontend:" + host, "vh%d" % i, *b))
    for start in range(0, len(cmds), 2000):
        redis.pipeline(cmds[start:start + 2000])
    redis.sock.close()


def guarded(results, proxy, what, fn):
    """Runs one measurement; an exception becomes an error cell instead of ending the run."""
    if not alive(proxy["pid"]):
        msg = "error: process %d is gone" % proxy["pid"]
        log("%s %s: %s" % (proxy["name"], what, msg))
        return msg
    try:
        return fn()
    except Exception as e:          # noqa: BLE001 - reported in the table
        log("%s %s failed: %s" % (proxy["name"], what, e))
        return "error: %s" % str(e).splitlines()[0][:200]


PHASES = ("throughput", "h2", "idle", "websocket", "transfer")


def run(targets_path, out_path, phase):
    """One phase against freshly started proxies; results accumulate in out_path."""
    with open(targets_path) as f:
        targets = json.load(f)
    proxies = targets["proxies"]
    names = [p["name"] for p in proxies]
    if not os.path.exists(out_path):
        res = {"settings": {"rounds": ROUNDS, "seconds": SECONDS, "quick": QUICK,
                            "idle_conns": IDLE_CONNS, "ws_tunnels": WS_TUNNELS,
                            "ws_window": WS_WINDOW, "vhosts": VHOSTS,
                            "route_samples": ROUTE_SAMPLES, "wrk_connections": WRK_CONNECTIONS,
                            "h2_connections": H2_CONNECTIONS, "h2_streams": H2_STREAMS,
                            "transfer_bytes": targets["transfer_bytes"]},
               "versions": targets.get("versions", {}), "proxies": names,
               "rounds": {}, "values": {}, "notes": []}
    else:
        with open(out_path) as f:
            res = json.load(f)
    vals = res["values"]

    def put(metric, name, value):
        vals.setdefault(metric, {})[name] = value

    if not res.get("redis_loaded"):
        res["redis_loaded"] = True
        log("loading Redis: %d virtual hosts" % VHOSTS)
        load_redis(targets)
    check_routes(targets)

    if phase == "throughput":
        for p in proxies:
            put("rss_start", p["name"], rss_tree(p["pid"]))
        throughput_phase(targets, res, put)
        route_phase(targets, res, put)
    elif phase == "h2":
        h2_phase(targets, res, put)
    else:
        log("warm-up (1 s of wrk per proxy)")
        for p in proxies:
            guarded(res, p, "warm-up", lambda: run_wrk(p["port"], 1))
    if phase == "idle":
        for p in proxies:
            log("idle keep-alive: %s, %d connections" % (p["name"], IDLE_CONNS))
            out = guarded(res, p, "idle", lambda: idle_test(p))
            if isinstance(out, str):
                put("idle_rss_per_conn", p["name"], out)
                put("idle_rss_after", p["name"], out)
            else:
                for k, v in out.items():
                    put(k, p["name"], v)
    elif phase == "websocket":
        for p in proxies:
            log("WebSocket: %s, %d tunnels" % (p["name"], WS_TUNNELS))
            out = guarded(res, p, "websocket", lambda: ws_test(p))
            if isinstance(out, str):
                put("ws_rss_per_tunnel", p["name"], out)
                put("ws_msgs", p["name"], out)
            else:
                put("ws_rss_per_tunnel", p["name"], out["ws_rss_per_tunnel"])
                put("ws_msgs", p["name"], statistics.median(out["ws_msgs"]))
                res["rounds"].setdefault("ws_msgs", {})[p["name"]] = out["ws_msgs"]
    elif phase == "transfer":
        size = targets["transfer_bytes"]
        for test, fn in (("upload", upload_test), ("download", download_test)):
            if test == "download":
                warm_backends(targets, size)
            for p in proxies:
                log("%s: %s, %d MB" % (test, p["name"], size >> 20))
                out = guarded(res, p, test, lambda: fn(p, size))
                if isinstance(out, str):
                    put(test + "_rss_growth", p["name"], out)
                    put(test + "_mbps", p["name"], out)
                else:
                    for k, v in out.items():
                        put(k, p["name"], v)

    for p in proxies:
        if not alive(p["pid"]):
            res["notes"].append("%s: the process exited during the %s phase" % (p["name"], phase))
    with open(out_path, "w") as f:
        json.dump(res, f, indent=1)


def throughput_phase(targets, res, put):
    proxies = targets["proxies"]
    log("warm-up (1 s of each wrk run per proxy)")
    for p in proxies:
        guarded(res, p, "warm-up", lambda: run_wrk(p["port"], 1))
        guarded(res, p, "warm-up", lambda: run_wrk(p["port"], 1, lua=targets["lua"]))
    for metric, lua in (("small", None), ("vhosts", targets["lua"])):
        def wrk(p):
            rps, p99, problems, total = run_wrk(p["port"], SECONDS, lua=lua)
            return [rps, p99], problems, total
        interleaved_rounds(proxies, res, put, metric, ("_rps", "_p99"), wrk)


def h2_modes():
    """(metric, TLS?, streams per connection): one stream per connection and multiplexed, over
    TLS (ALPN h2) and over h2c with prior knowledge (the difference is the cost of TLS)."""
    return (("h2tls_m1", True, 1), ("h2tls_mx", True, H2_STREAMS), ("h2c_m1", False, 1),
            ("h2c_mx", False, H2_STREAMS))


def h2_phase(targets, res, put):
    proxies = targets["proxies"]
    log("h2 check and warm-up (1 s of each h2load run per proxy)")
    for p in proxies:
        for _, tls, streams in h2_modes():
            port = p["tls_port"] if tls else p["h2c_port"]
            out = run_h2load(port, tls, streams, requests=20, clients=2)
            if out[1]:
                raise SystemExit("%s: h2 check on port %d: %s" % (p["name"], port, out[1]))
            if out[3]:
                res.setdefault("tls_ciphers", {})[p["name"]] = out[3]
            guarded(res, p, "warm-up", lambda: run_h2load(port, tls, streams, seconds=1))
    for metric, tls, streams in h2_modes():
        def h2load(p):
            rps, problems, ok, _ = run_h2load(p["tls_port"] if tls else p["h2c_port"], tls,
                                              streams, seconds=SECONDS)
            return [rps], problems, ok
        interleaved_rounds(proxies, res, put, metric, ("_rps",), h2load)


def interleaved_rounds(proxies, res, put, metric, suffixes, measure):
    """ROUNDS rounds of measure(proxy) -> (figures, problems, requests done) for every proxy,
    interleaved (round 1 of each, then round 2...) so background noise hits all alike. Records
    the median of each figure (metric + suffix) and of the proxy's CPU time per request
    (metric + "_cpu"); every round goes to res["rounds"][metric] as figures + [CPU µs, of which
    user space µs] (the rest is the kernel's: the proxies' system calls cost about the same)."""
    per = {p["name"]: [] for p in proxies}
    for r in range(ROUNDS):
        for p in proxies:
            log("%s round %d/%d: %s (%gs)" % (metric, r + 1, ROUNDS, p["name"], SECONDS))
            user_before, system_before = cpu_times_tree(p["pid"])
            out = guarded(res, p, metric, lambda: measure(p))
            if isinstance(out, str):
                per[p["name"]].append(out)
                continue
            figures, problems, total = out
            user_after, system_after = cpu_times_tree(p["pid"])
            user_us = (user_after - user_before) * 1e6 / max(total, 1)
            cpu_us = user_us + (system_after - system_before) * 1e6 / max(total, 1)
            per[p["name"]].append(figures + [round(cpu_us, 2), round(user_us, 2)])
            for problem in problems:
                res["notes"].append("%s, %s round %d: %s" % (p["name"], metric, r + 1, problem))
    res["rounds"][metric] = per
    suffixes = tuple(suffixes) + ("_cpu",)
    for n, rounds in per.items():
        ok = [x for x in rounds if not isinstance(x, str)]
        for i, suffix in enumerate(suffixes):
            put(metric + suffix, n, statistics.median(x[i] for x in ok) if ok else rounds[0])


def route_phase(targets, res, put):
    for p in targets["proxies"]:
        if p["name"] != "hipache":
            for m in ("route_median", "route_p90", "route_miss_median", "route_miss_p90"):
                put(m, p["name"], "n/a")
            continue
        for miss, prefix in ((False, "route"), (True, "route_miss")):
            log("Redis write -> first routed request: %s, %d samples%s"
                % (p["name"], ROUTE_SAMPLES, " (host requested before)" if miss else ""))
            out = guarded(res, p, "route latency",
                          lambda: route_latency(p, targets["redis_port"], targets["backends"][0],
                                                miss_first=miss))
            if isinstance(out, str):
                put(prefix + "_median", p["name"], out)
                put(prefix + "_p90", p["name"], out)
            else:
                put(prefix + "_median", p["name"], out["median"])
                put(prefix + "_p90", p["name"], out["p90"])
                res["notes"].append("%s: Redis write -> route%s: at most %d request(s) per sample"
                                    % (p["name"], " after a miss" if miss else "",
                                       out["max_attempts"]))


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "run" and sys.argv[4] in PHASES:
        run(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) in (3, 4) and sys.argv[1] == "table":
        with open(sys.argv[2]) as f:
            text = render(json.load(f))
        print(text)
        if len(sys.argv) == 4:
            os.makedirs(os.path.dirname(os.path.abspath(sys.argv[3])), exist_ok=True)
            with open(sys.argv[3], "w") as f:
                f.write(text)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
