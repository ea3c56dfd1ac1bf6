"""The processes of the chaos test (chaos.py), each one started, killed and restarted as a real
process: the HTTP backends (chaos.py re-executed with --backend), redis-server with the routes
seeded in one MULTI, and hipache itself with the chaos configuration.
"""
import json
import os
import pwd
import random
import signal
import socket
import subprocess
import sys
import time

HOSTS = ("chaos.test", "www.chaos.test")  # the second is routed by the "*.chaos.test" wildcard
TCP_TIMEOUT = 5
DEAD_BACKEND_TTL = 2
BACKEND_DOWN_TIME = 0.5

# The backends run chaos.py again (its hidden --backend option calls backend_main), so that a
# SIGKILL is a real crash of a separate process.
CHAOS_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chaos.py")


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
            [sys.executable, CHAOS_SCRIPT, "--backend", str(self.port), self.name],
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
