"""The load and the chaos of the chaos test (chaos.py): threads sending GETs and POSTs on fresh
connections, each request's outcome and time span recorded, and the round robin of events
(backend, worker and Redis kills, SIGHUP) with the window each one may cause failures in.
"""
import http.client
import json
import os
import random
import signal
import socket
import threading
import time

from chaos_processes import BACKEND_DOWN_TIME, HOSTS


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
