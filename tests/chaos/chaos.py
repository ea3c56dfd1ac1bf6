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
"""

import argparse
import contextlib
import http.client
import json
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
HOSTS = ("chaos.test", "www.chaos.test")  # the second is routed by the "*.chaos.test" wildcard
TCP_TIMEOUT = 5
DEAD_BACKEND_TTL = 2
BACKEND_DOWN_TIME = 0.5


def log(*args):
    print("chaos:", *args, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=10.0, process=None, interval=0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError("process exited with %s before listening on %d"
                               % (process.returncode, port))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(interval)
    raise RuntimeError("nothing listening on port %d after %.0fs" % (port, timeout))


# --------------------------------------------------------------------------- backend process

def backend_main(port, name):
    """Runs one backend (this file re-executed with --backend): answers every request with
    {"backend": name, "received": n} after a short random delay, so requests are in flight
    when the process is killed."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            received = len(self.rfile.read(length)) if length else 0
            time.sleep(random.uniform(0.0, 0.03))
            payload = json.dumps({"backend": name, "received": received}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _handle

    class Server(ThreadingHTTPServer):
        allow_reuse_address = True
        daemon_threads = True
        request_queue_size = 128

        def handle_error(self, request, client_address):
            # A connection the proxy dropped (its worker was killed, say): nothing to report.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    server = Server(("127.0.0.1", port), Handler)
    server.serve_forever()


class Backend:
    def __init__(self, name, port):
        self.name = name
        self.port = port
        self.url = "http://127.0.0.1:%d" % port
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--backend", str(self.port), self.name],
            stdin=subprocess.DEVNULL)
        wait_for_port(self.port, process=self.process)

    def kill(self):
        self.process.kill()
        self.process.wait()

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.kill()


# --------------------------------------------------------------------------- Redis

def resp_command(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Redis:
    def __init__(self, workdir):
        self.port = free_port()
        self.dir = os.path.join(workdir, "redis")
        os.makedirs(self.dir)
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, process=self.process)

    def seed(self, backends):
        """(Re-)adds the routes in one MULTI, so a reader never sees half of them."""
        urls = [b.url for b in backends]
        commands = [resp_command("MULTI"),
                    resp_command("DEL", "frontend:chaos.test", "frontend:*.chaos.test"),
                    resp_command("RPUSH", "frontend:chaos.test", "chaos", *urls),
                    resp_command("RPUSH", "frontend:*.chaos.test", "chaos-wildcard", *urls),
                    resp_command("EXEC")]
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"".join(commands))
            data = b""
            # +OK, 3 x +QUEUED, then the EXEC array: its last line ends with the last RPUSH count.
            while data.count(b"\r\n") < 8:
                chunk = s.recv(4096)
                if not chunk:
                    raise RuntimeError("redis closed the connection while seeding")
                data += chunk
            if b"-" in data[:1] or b"\r\n-" in data:
                raise RuntimeError("redis refused the routes: %r" % data)

    def kill(self):
        self.process.kill()
        self.process.wait()

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# --------------------------------------------------------------------------- the proxy

class Proxy:
    def __init__(self, binary, workdir, redis_port, workers):
        self.port = free_port()
        self.workers = workers
        config = {
            "server": {"workers": workers, "tcpTimeout": TCP_TIMEOUT,
                       "deadBackendTTL": DEAD_BACKEND_TTL, "retryOnError": 3,
                       "accessLog": os.path.join(workdir, "access.log"),
                       "gracefulWait": 10, "memoryLimit": 0},
            "http": {"port": self.port, "bind": ["127.0.0.1"]},
            "https": {"bind": []},
            "driver": "redis://127.0.0.1:%d" % redis_port,
            "user": pwd.getpwuid(os.getuid()).pw_name,
        }
        self.config_path = os.path.join(workdir, "config.json")
        with open(self.config_path, "w") as f:
            json.dump(config, f)
        self.stderr_path = os.path.join(workdir, "hipache.log")
        self.stderr = open(self.stderr_path, "wb")
        self.process = subprocess.Popen([binary, "-c", self.config_path],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=self.stderr)
        wait_for_port(self.port, process=self.process)

    def worker_pids(self):
        pid = self.process.pid
        try:
            with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def log(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, timeout=20):
        """SIGTERM; returns the exit status (None if it had to be SIGKILLed)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                self.stderr.close()
                return None
        self.stderr.close()
        return self.process.returncode


# --------------------------------------------------------------------------- load

class Result:
    __slots__ = ("start", "end", "outcome", "method")

    def __init__(self, start, end, outcome, method):
        self.start, self.end, self.outcome, self.method = start, end, outcome, method


def one_request(port, host, method, body, timeout):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Host": host}
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        conn.request(method, "/chaos?n=%d" % random.randrange(1 << 30), body=body,
                     headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            return "http_%d" % response.status
        reply = json.loads(data)
        if not str(reply.get("backend", "")).startswith("backend"):
            return "bad_body"
        if body is not None and reply.get("received") != len(body):
            return "bad_body"
        return "ok"
    except socket.timeout:
        return "timeout"
    except (OSError, http.client.HTTPException) as error:
        return "conn_error:" + type(error).__name__
    except ValueError:
        return "bad_body"
    finally:
        conn.close()


class Load:
    def __init__(self, port, threads, timeout):
        self.port = port
        self.timeout = timeout
        self.results = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(self.timeout + 5)

    def _run(self):
        rng = random.Random()
        while not self.stopping.is_set():
            host = rng.choice(HOSTS)
            if rng.random() < 0.3:
                method, body = "POST", os.urandom(rng.randrange(1, 4096))
            else:
                method, body = "GET", None
            start = time.monotonic()
            outcome = one_request(self.port, host, method, body, self.timeout)
            result = Result(start, time.monotonic(), outcome, method)
            with self.lock:
                self.results.append(result)


# --------------------------------------------------------------------------- chaos

class Event:
    def __init__(self, kind, detail, begin, end):
        self.kind, self.detail, self.begin, self.end = kind, detail, begin, end


class Chaos:
    SCHEDULE = ("backend", "worker", "backend", "redis", "backend", "sighup")

    def __init__(self, proxy, redis, backends, interval):
        self.proxy, self.redis, self.backends, self.interval = proxy, redis, backends, interval
        self.events = []
        self.errors = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.next_backend = 0

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopping.set()
        self.thread.join(60)

    def _run(self):
        step = 0
        while not self.stopping.wait(self.interval):
            kind = self.SCHEDULE[step % len(self.SCHEDULE)]
            step += 1
            try:
                getattr(self, "_" + kind)()
            except Exception as error:  # an event that could not be carried out fails the run
                self.errors.append("%s: %r" % (kind, error))
                return

    def _backend(self):
        backend = self.backends[self.next_backend % len(self.backends)]
        self.next_backend += 1
        t = time.monotonic()
        backend.kill()
        self.events.append(Event("backend", backend.name, t, t))
        time.sleep(BACKEND_DOWN_TIME)
        backend.start()

    def _worker(self):
        pids = self.proxy.worker_pids()
        if not pids:
            raise RuntimeError("no worker to kill")
        pid = random.choice(pids)
        t = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        self.events.append(Event("worker", "pid %d" % pid, t, t))

    def _redis(self):
        t = time.monotonic()
        self.redis.kill()
        self.redis.start()
        self.redis.seed(self.backends)
        # The workers' Redis connections come back after their back-off (100 ms, doubling).
        self.events.append(Event("redis", "down %.0f ms" % ((time.monotonic() - t) * 1000),
                                 t, time.monotonic()))

    def _sighup(self):
        t = time.monotonic()
        self.proxy.process.send_signal(signal.SIGHUP)
        self.events.append(Event("sighup", "reload", t, t))


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
