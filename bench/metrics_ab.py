"""What counting metrics costs a request: hipache built with the counters compiled out
(cmake -DHIPACHE_METRICS=OFF) against the normal build, and the normal build with the admin
listener and per-frontend series on, measured in one interleaved run. See bench/README.md.

    python3 bench/metrics_ab.py --on build/hipache --off build-nometrics/hipache \
        --rounds 5 --seconds 5 --out bench/results/<date>-metrics.md

Each round runs wrk (-t1 -c64, Host: bench.test, GET / -> "ok" from one nginx backend) against
every variant in turn, the order rotating from round to round; a variant's figure is the median
over the rounds of its proxy CPU time (master and workers, /proc) divided by the requests wrk
completed. Every variant runs 2 workers bound one per CPU, keep-alive to the backend, no access
log, as in bench/run.sh.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure_metrics import run_wrk  # noqa: E402
from measure_proc import cpu_seconds_tree  # noqa: E402

HOST = "bench.test"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on %d" % port)


def nginx_backend(tmp, port):
    os.makedirs(os.path.join(tmp, "nginx"), exist_ok=True)
    conf = os.path.join(tmp, "nginx", "nginx.conf")
    with open(conf, "w") as f:
        f.write("""daemon off; master_process on; worker_processes 1; user root;
pid %(d)s/nginx.pid; error_log %(d)s/error.log error;
events { worker_connections 4096; }
http { access_log off; keepalive_timeout 60s; keepalive_requests 1000000;
  client_body_temp_path %(d)s/cb; proxy_temp_path %(d)s/p; fastcgi_temp_path %(d)s/f;
  uwsgi_temp_path %(d)s/u; scgi_temp_path %(d)s/s;
  server { listen 127.0.0.1:%(port)d backlog=4096;
    location / { default_type text/plain; return 200 "ok"; } } }
""" % {"d": os.path.join(tmp, "nginx"), "port": port})
    return subprocess.Popen(["nginx", "-p", os.path.join(tmp, "nginx"), "-c", conf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def hipache_config(port, redis_port, admin_port=None):
    config = {"server": {"workers": 2, "httpKeepAlive": True, "maxSockets": 100,
                         "tcpTimeout": 60, "accessLog": None, "memoryLimit": 0,
                         "gracefulWait": 2, "cpuAffinity": True},
              "http": {"port": port, "bind": ["127.0.0.1"]}, "https": {"bind": []},
              "driver": "redis://127.0.0.1:%d" % redis_port, "user": "root"}
    if admin_port:
        config["admin"] = {"bind": ["127.0.0.1"], "port": admin_port, "frontendMetrics": 10}
    return config


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--on", required=True, help="the normal build")
    parser.add_argument("--off", required=True, help="built with -DHIPACHE_METRICS=OFF")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--out")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="hipache-metrics-ab.")
    processes = []
    try:
        redis_port, backend_port = free_port(), free_port()
        processes.append(subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL))
        processes.append(nginx_backend(tmp, backend_port))
        wait_port(redis_port)
        wait_port(backend_port)
        subprocess.run(["redis-cli", "-p", str(redis_port), "rpush", "frontend:" + HOST, "b",
                        "http://127.0.0.1:%d" % backend_port], check=True,
                       stdout=subprocess.DEVNULL)
        variants = {}
        for name, binary, admin in (("counters compiled out", args.off, False),
                                    ("counters (default)", args.on, False),
                                    ("counters + admin + frontendMetrics 10", args.on, True)):
            copy = os.path.join(tmp, "hipache-%d" % len(variants))
            shutil.copy2(binary, copy)  # a rebuild during the run must not swap it
            port = free_port()
            path = os.path.join(tmp, "config-%d.json" % len(variants))
            with open(path, "w") as f:
                json.dump(hipache_config(port, redis_port, free_port() if admin else None), f)
            proc = subprocess.Popen([copy, "-c", path], stdout=subprocess.DEVNULL,
                                    stderr=open(os.path.join(tmp, "stderr-%d" % len(variants)),
                                                "wb"))
            processes.append(proc)
            variants[name] = {"port": port, "pid": proc.pid, "cpu_us": [], "rps": []}
        for v in variants.values():
            wait_port(v["port"])
        time.sleep(1)
        names = list(variants)
        for v in variants.values():
            run_wrk(v["port"], 1, host=HOST)  # warm-up: connections, route cache
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                v = variants[name]
                before = cpu_seconds_tree(v["pid"])
                rps, _, problems, total = run_wrk(v["port"], args.seconds, host=HOST)
                cpu = cpu_seconds_tree(v["pid"]) - before
                if problems:
                    raise RuntimeError("%s: %s" % (name, problems))
                v["cpu_us"].append(cpu / total * 1e6)
                v["rps"].append(rps)
                print("round %d %-40s %8.0f req/s %6.2f us CPU/request"
                      % (r + 1, name, rps, v["cpu_us"][-1]), flush=True)
        base = statistics.median(variants[names[0]]["cpu_us"])
        lines = ["| Variant | req/s (median) | proxy CPU per request, µs (median) "
                 "| vs compiled out |",
                 "|---|---:|---:|---:|"]
        for name in names:
            v = variants[name]
            cpu = statistics.median(v["cpu_us"])
            lines.append("| %s | %.0f | %.2f | %.3fx |" % (name, statistics.median(v["rps"]),
                                                          cpu, cpu / base))
        lines.append("")
        lines.append("Per round (µs CPU per request): " + "; ".join(
            "%s: %s" % (n, ", ".join("%.2f" % x for x in variants[n]["cpu_us"])) for n in names))
        table = "\n".join(lines) + "\n"
        print(table)
        if args.out:
            with open(args.out, "w") as f:
                f.write(table)
    finally:
        for proc in reversed(processes):
            proc.terminate()
        for proc in processes:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
