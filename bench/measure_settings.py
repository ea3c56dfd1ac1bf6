"""The settings of bench/measure.py, read from the environment once (see bench/README.md), and
its log line.
"""
import os
import sys

QUICK = os.environ.get("BENCH_QUICK", "0") not in ("", "0")
ROUNDS = int(os.environ.get("BENCH_ROUNDS") or (1 if QUICK else 3))
SECONDS = float(os.environ.get("BENCH_SECONDS") or (2 if QUICK else 10))
IDLE_CONNS = int(os.environ.get("BENCH_IDLE_CONNS") or 4000)
WS_TUNNELS = int(os.environ.get("BENCH_WS_TUNNELS") or 1000)
WS_WINDOW = int(os.environ.get("BENCH_WS_WINDOW") or 1)      # messages in flight per tunnel
VHOSTS = int(os.environ.get("BENCH_VHOSTS") or 10000)
ROUTE_SAMPLES = int(os.environ.get("BENCH_ROUTE_SAMPLES") or 50)
WRK_CONNECTIONS = 64
H2_CONNECTIONS = int(os.environ.get("BENCH_H2_CONNECTIONS") or 32)
H2_STREAMS = int(os.environ.get("BENCH_H2_STREAMS") or 16)    # the multiplexed rows' -m
SMALL_HOST = "bench.test"
UPLOAD_HOST = "upload.test"
WS_HOST = "ws.test"


def log(msg):
    print("[bench] " + msg, file=sys.stderr, flush=True)
