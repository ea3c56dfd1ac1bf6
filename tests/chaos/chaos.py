#!/usr/bin/env python3
"""Chaos test: the real hipache binary under continuous load while its surroundings fail.

Standard library only. Starts a redis-server, three HTTP backends (separate Python processes, so a
SIGKILL is a real crash), and hipache (server.workers 2, the live route cache on). Load threads
send requests on fresh connections (GETs, and POSTs with a body) to two hosts routed to the three
backends. Meanwhile, every --interval seconds, one of these happens, in this order, round robin:

  backend   SIGKILL one backend, restart it on the same port 0.5 s later
  worker    SIGKILL one hipache worker (the master replaces it)
  backend   (the next backend)
  redis     SIGKILL redis-server, restart it on the same port, re-add the routes
  backend   (the next backend)
  sighup    SIGHUP to the master (reload: new workers, the old ones drain)

Every request is classified (ok, HTTP error status, connection error, timeout) and printed in a
summary. Expectations (docs/testing.md), each checked:

  1. No hung request: every request completes within tcpTimeout + 2 s.
  2. Failures only where a process died under them: every failed request was in flight during
     an event's window (the kill instant for a backend or a worker; from the kill until the
     routes are back plus the Redis client's reconnect back-off for Redis; none for SIGHUP),
     widened by --slack seconds.
  3. No failure at all is attributed to SIGHUP (a reload drains, it does not cut).
  4. Failures <= --max-failure-rate of all requests (default 1%).
  5. Afterwards the proxy serves normally: two workers, every request answered by a backend,
     every backend in rotation again, and SIGTERM stops it with exit status 0. No sanitizer
     report in its stderr (for the ASan build).

Usage: chaos.py [--duration 20] [--binary build/hipache] [--threads 8] ...
Exit status 0 when every expectation holds.

Beside it: chaos_processes.py (the backends, redis-server and hipache), chaos_load.py (the load
threads and the events).
"""

import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import time

from chaos_load import Chaos, Load, one_request
from chaos_processes import (DEAD_BACKEND_TTL, HOSTS, TCP_TIMEOUT, Backend, Proxy, Redis,
                             backend_main, free_port)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def log(*args):
    print("chaos:", *args, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- checks

def attribute(result, events, slack):
    """The event whose window the request overlapped (the nearest one), or None."""
    best = None
    for event in events:
        if result.start <= event.end + slack and result.end >= event.begin - 0.01:
            distance = abs(result.start - event.begin)
            if best is None or distance < best[0]:
                best = (distance, event)
    return best[1] if best else None


def percentile(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def final_checks(proxy, backends, timeout):
    """The proxy serves normally once the chaos stops. Returns a list of problems."""
    problems = []
    deadline = time.monotonic() + 10
    while len(proxy.worker_pids()) != proxy.workers and time.monotonic() < deadline:
        time.sleep(0.1)
    if len(proxy.worker_pids()) != proxy.workers:
        problems.append("%d workers after the run, expected %d"
                        % (len(proxy.worker_pids()), proxy.workers))
    time.sleep(DEAD_BACKEND_TTL + 0.5)  # every dead mark has expired
    seen = set()
    failures = []
    for i in range(90):
        outcome = one_request(proxy.port, HOSTS[i % 2], "GET", None, timeout)
        if outcome != "ok":
            failures.append(outcome)
    if failures:
        problems.append("%d of 90 requests failed after the run: %s"
                        % (len(failures), sorted(set(failures))))
    # Which backends answer: ask until each has been seen (random balancing).
    for _ in range(200):
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=timeout)
        try:
            conn.request("GET", "/", headers={"Host": HOSTS[0]})
            response = conn.getresponse()
            seen.add(json.loads(response.read()).get("backend"))
        except (OSError, ValueError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        if len(seen) == len(backends):
            break
    if len(seen) != len(backends):
        problems.append("only %s answered after the run" % sorted(seen))
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", nargs=2, metavar=("PORT", "NAME"), help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=20, help="seconds of load (20)")
    parser.add_argument("--binary", default=os.environ.get(
        "HIPACHE_BINARY", os.path.join(ROOT, "build", "hipache")))
    parser.add_argument("--threads", type=int, default=8, help="load threads (8)")
    parser.add_argument("--interval", type=float, default=2.5,
                        help="seconds between chaos events (2.5)")
    parser.add_argument("--slack", type=float, default=1.0,
                        help="seconds an event's window is widened by (1.0)")
    parser.add_argument("--max-failure-rate", type=float, default=0.01,
                        help="largest share of failed requests accepted (0.01)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if args.backend:
        backend_main(int(args.backend[0]), args.backend[1])
        return 0

    if not os.access(args.binary, os.X_OK):
        log("no hipache binary at %s (build it, or pass --binary)" % args.binary)
        return 2
    workdir = tempfile.mkdtemp(prefix="hipache-chaos-")
    backends = [Backend("backend%d" % i, free_port()) for i in range(3)]
    redis = Redis(workdir)
    proxy = None
    load = None
    chaos = None
    problems = []
    request_timeout = TCP_TIMEOUT + 2
    try:
        for b in backends:
            b.start()
        redis.start()
        redis.seed(backends)
        proxy = Proxy(args.binary, workdir, redis.port, workers=2)
        # Both workers up and routing before the clock starts.
        deadline = time.monotonic() + 10
        while one_request(proxy.port, HOSTS[0], "GET", None, 2) != "ok":
            if time.monotonic() > deadline:
                raise RuntimeError("the proxy does not route before the chaos starts:\n"
                                   + proxy.log()[-3000:])
            time.sleep(0.1)

        log("load: %d threads for %.0f s; an event every %.1f s; binary %s"
            % (args.threads, args.duration, args.interval, args.binary))
        load = Load(proxy.port, args.threads, request_timeout)
        chaos = Chaos(proxy, redis, backends, args.interval)
        started = time.monotonic()
        load.start()
        chaos.start()
        # The last interval (at least 2 s) runs without new events: the tail shows recovery.
        time.sleep(max(0.0, args.duration - max(args.interval, 2.0)))
        chaos.stop()
        time.sleep(max(0.0, started + args.duration - time.monotonic()))
        load.stop()
        elapsed = time.monotonic() - started
        problems += ["chaos event failed: " + e for e in chaos.errors]

        results = list(load.results)
        events = chaos.events
        total = len(results)
        counts = {}
        for r in results:
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
        failed = [r for r in results if r.outcome != "ok"]
        hung = [r for r in results if r.outcome == "timeout" or r.end - r.start > request_timeout]
        per_kind = {kind: {"events": 0, "failed": 0, "in_flight": 0} for kind in Chaos.SCHEDULE}
        for e in events:
            per_kind[e.kind]["events"] += 1
            per_kind[e.kind]["in_flight"] += sum(1 for r in results
                                                 if r.start <= e.begin <= r.end)
        unexplained = []
        for r in failed:
            event = attribute(r, events, args.slack)
            if event is None:
                unexplained.append(r)
            else:
                per_kind[event.kind]["failed"] += 1
        latencies = [r.end - r.start for r in results]

        print("== chaos summary ==")
        print("requests: %d in %.1f s (%.0f/s), %d threads" % (total, elapsed,
                                                              total / elapsed, args.threads))
        for outcome in sorted(counts, key=lambda k: -counts[k]):
            print("  %-28s %d" % (outcome, counts[outcome]))
        print("failed: %d (%.3f%%), hung: %d, unexplained: %d" % (
            len(failed), 100.0 * len(failed) / max(total, 1), len(hung), len(unexplained)))
        print("latency: p50 %.1f ms, p99 %.1f ms, max %.1f ms" % (
            percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000,
            max(latencies, default=0) * 1000))
        print("events (count, requests in flight at the event, failures attributed):")
        for kind in ("backend", "worker", "redis", "sighup"):
            k = per_kind[kind]
            print("  %-8s %2d events, %4d in flight, %3d failed" % (
                kind, k["events"], k["in_flight"], k["failed"]))
        for e in events:
            print("    t=%6.2f %-8s %s" % (e.begin - started, e.kind, e.detail))
        for r in unexplained[:20]:
            print("  unexplained: t=%.3f..%.3f %s %s" % (r.start - started, r.end - started,
                                                         r.method, r.outcome))

        if total == 0:
            problems.append("no request completed")
        if hung:
            problems.append("%d requests took longer than %d s" % (len(hung), request_timeout))
        if unexplained:
            problems.append("%d failures outside every event window" % len(unexplained))
        if per_kind["sighup"]["failed"]:
            problems.append("%d failures during SIGHUP reloads" % per_kind["sighup"]["failed"])
        if total and len(failed) > args.max_failure_rate * total:
            problems.append("%d failures > %.2f%% of %d requests" % (
                len(failed), 100 * args.max_failure_rate, total))
        if proxy.process.poll() is not None:
            problems.append("the master exited with %s" % proxy.process.returncode)
        else:
            problems += final_checks(proxy, backends, request_timeout)
    except Exception as error:
        problems.append("chaos run aborted: %r" % (error,))
    finally:
        if load is not None:
            load.stop()
        if chaos is not None:
            chaos.stop()
        if proxy is not None:
            status = proxy.stop()
            if status != 0:
                problems.append("hipache exited with %s on SIGTERM (expected 0)" % status)
            proxy_log = proxy.log()
            for marker in SANITIZER_MARKERS:
                if marker in proxy_log:
                    problems.append("sanitizer report in hipache's stderr")
                    break
        for b in backends:
            b.stop()
        redis.stop()
        if problems and proxy is not None:
            print("-- hipache stderr (last 4000 bytes) --")
            print(proxy.log()[-4000:])
        if args.keep:
            log("work directory kept: %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    if problems:
        for p in problems:
            print("FAIL:", p)
        return 1
    print("chaos: all expectations hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
