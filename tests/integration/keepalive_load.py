"""Helpers for the lossless-handover tests (test_handover.py): a keep-alive load generator that
notices every lost request exactly, a fast backend script, /proc helpers for the master and its
workers, and a throw-away TLS certificate.

Standard library only. Everything is loopback.
"""
import collections
import contextlib
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import threading
import time

import harness
from process_helpers import alive, children, socket_inodes  # noqa: F401 (re-exported)


# --------------------------------------------------------------------------- /proc helpers

def exe(pid):
    """The target of /proc/<pid>/exe: the file the process runs, " (deleted)" appended once
    that file was unlinked or replaced."""
    try:
        return os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return None


def tcp_sockets(port):
    """(state, remote port, inode) of every loopback TCP socket whose local port is `port`
    (state "01" = ESTABLISHED, "0A" = LISTEN)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    yield fields[3], int(fields[2].rsplit(":", 1)[1], 16), int(fields[9])


def client_ports_held_by(pid, port):
    """The client-side ports of the connections to `port` whose server side pid holds (which
    client connections a worker serves)."""
    inodes = socket_inodes(pid)
    return {remote for state, remote, inode in tcp_sockets(port)
            if state == "01" and inode in inodes}


def listening_inodes(port):
    """The inodes of the sockets listening on `port`: the same before and after an upgrade
    means the listening sockets were never closed."""
    return {inode for state, _, inode in tcp_sockets(port) if state == "0A"}


class WorkerWatch:
    """Polls the master's children every 20 ms: `seen` holds every worker pid that existed
    while it ran (a worker replaced every second lives long enough to be seen)."""

    def __init__(self, master):
        self.master = master
        self.seen = set(children(master))
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.wait(0.02):
            self.seen |= children(self.master)

    def stop(self):
        self.stopping.set()
        self.thread.join(5)
        return self.seen


def kill_leftovers(pids, marker):
    """SIGKILLs the pids still alive whose command line holds `marker` (the test's config path,
    so that a reused pid is never hit). For workers left behind by a master that died."""
    for pid in pids:
        with contextlib.suppress(OSError):
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                if alive(pid) and marker.encode() in f.read():
                    os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- the proxy

def replace_file(path, source=None, script=None):
    """Replaces `path` atomically (a copy under a temporary name in the same directory, then
    rename), as an install does: the running image keeps its inode, so /proc/<pid>/exe of a
    process started from `path` reads "... (deleted)" afterwards. The new file is a copy of
    `source`, or a script with the text `script`."""
    temporary = path + ".new"
    if source is not None:
        shutil.copy(source, temporary)
    else:
        with open(temporary, "w") as f:
            f.write(script)
    os.chmod(temporary, 0o755)
    os.replace(temporary, path)


# --------------------------------------------------------------------------- TLS

def make_certificate(directory, name="secure.test"):
    """A self-signed EC certificate for `name`: (cert path, key path)."""
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                    "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "3",
                    "-subj", "/CN=" + name, "-addext", "subjectAltName=DNS:" + name,
                    "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=30)
    return cert, key


# --------------------------------------------------------------------------- backend

def answer_ok(conn):
    """harness.RawBackend script: a fixed 200 "ok" for every request head, keep-alive until the
    proxy closes. Much cheaper per request than http.server, so the proxy (not the backend) is
    what the load exercises."""
    data = b""
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
            continue
        head, data = data[:end].lower(), data[end + 4:]
        close = b"connection: close" in head
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n%s\r\nok"
                     % (b"Connection: close\r\n" if close else b""))
        if close:
            return


# --------------------------------------------------------------------------- load

class Failure(Exception):
    """A lost request: `kind` is the counter it goes to."""

    def __init__(self, kind, detail):
        super().__init__("%s: %s" % (kind, detail))
        self.kind = kind


class Connection:
    """One raw client connection with its own read buffer, so that a close by the server is
    seen exactly: before a request, while waiting for a response, or after a full one."""

    def __init__(self, port, timeout):
        try:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except OSError as error:
            raise Failure("connect failed", repr(error)) from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local_port = self.sock.getsockname()[1]
        self.buffer = b""

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()

    def closed_while_idle(self):
        """Between requests: True when the server already closed this connection (EOF or
        reset waiting). Data arriving unasked is a failure of its own."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        if not readable and not self.buffer:
            return False
        try:
            data = self.buffer or self.sock.recv(65536)
        except OSError:
            return True
        if not data:
            return True
        raise Failure("unsolicited data", repr(data[:80]))

    def _fill(self, got_any):
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise Failure("timeout", "no complete response in time") from None
        except ConnectionResetError:
            raise Failure("reset", "reset %s the response" % (
                "during" if got_any else "before")) from None
        except OSError as error:
            raise Failure("recv error", repr(error)) from None
        if not chunk:
            raise Failure("eof mid-response" if got_any else "eof before response",
                          "closed after %d bytes" % len(self.buffer))
        self.buffer += chunk

    def _skip(self, n):
        while len(self.buffer) < n:
            self._fill(True)
        self.buffer = self.buffer[n:]

    def _line(self):
        while b"\r\n" not in self.buffer:
            self._fill(True)
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def exchange(self, request):
        """Sends one request and reads its response completely. Returns (status, close): close
        is True when the response said Connection: close (or had no length: read to EOF)."""
        try:
            self.sock.sendall(request)
        except OSError as error:
            raise Failure("send failed", repr(error)) from None
        while b"\r\n\r\n" not in self.buffer:
            self._fill(bool(self.buffer))
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise Failure("bad response", repr(lines[0][:80]))
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        close = "close" in headers.get("connection", "") or parts[0] == "HTTP/1.0"
        if "chunked" in headers.get("transfer-encoding", ""):
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                self._skip(size + 2)
        elif "content-length" in headers:
            self._skip(int(headers["content-length"]))
        elif status not in (204, 304):
            raise Failure("bad response", "no Content-Length nor chunked framing")
        return status, close


class Load:
    """Client threads against the proxy, until stop():

    - `back_to_back` threads, each holding ONE keep-alive connection, sending GETs one after
      the other;
    - `pausing` threads, the same with a random pause of 0..max_pause s before each request,
      so that their connections sit idle while a worker is replaced;
    - `connectors` threads opening a fresh connection (Connection: close) for every request.

    A keep-alive client reconnects after a response that carried Connection: close (not a
    failure). Failures, counted per kind: a connect that fails, a request without a complete
    response (reset, EOF, timeout), a status other than 200, and a keep-alive connection the
    server closed while it was idle without having announced it (the contract: idle
    connections of a replaced worker are handed over, not closed). A client that failed
    reconnects and goes on.
    """

    def __init__(self, port, host, back_to_back=4, pausing=0, connectors=0, max_pause=0.3,
                 path="/", timeout=10.0, max_seconds=60.0):
        self.port = port
        self.request_bytes = ("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)).encode()
        self.close_bytes = ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                            % (path, host)).encode()
        self.timeout = timeout
        self.max_pause = max_pause
        self.deadline = time.time() + max_seconds
        self.started = time.time()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.ok = collections.Counter()        # role -> completed 200s
        self.failures = collections.Counter()  # (role, kind) -> count
        self.failed_clients = collections.Counter()  # client id -> failures
        self.samples = []                      # first failure descriptions
        self.announced_closes = 0              # Connection: close, then reconnect (fine)
        self.connects = collections.Counter()  # role -> successful connects
        self.local_ports = {}                  # client id -> port of its current connection
        self.threads = []
        for i in range(back_to_back):
            self._spawn(self._keepalive, "keepalive-%d" % i, False)
        for i in range(pausing):
            self._spawn(self._keepalive, "pausing-%d" % i, True)
        for i in range(connectors):
            self._spawn(self._connector, "connector-%d" % i)

    def _spawn(self, target, name, *args):
        thread = threading.Thread(target=target, args=(name,) + args, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _running(self):
        return not self.stopping.is_set() and time.time() < self.deadline

    @staticmethod
    def role(client):
        return client.split("-")[0]

    def _record_ok(self, client):
        with self.lock:
            self.ok[self.role(client)] += 1

    def _record_failure(self, client, failure):
        with self.lock:
            self.failures[(self.role(client), failure.kind)] += 1
            self.failed_clients[client] += 1
            if len(self.samples) < 15:
                self.samples.append("%.2fs %s: %s" % (time.time() - self.started, client,
                                                      failure))

    def _connect(self, client):
        """A new connection, retried (each failed attempt counted) until one succeeds."""
        while self._running():
            try:
                conn = Connection(self.port, self.timeout)
            except Failure as failure:
                self._record_failure(client, failure)
                time.sleep(0.05)
                continue
            with self.lock:
                self.connects[self.role(client)] += 1
                self.local_ports[client] = conn.local_port
            return conn
        return None

    def _keepalive(self, client, pausing):
        rng = random.Random(client)
        conn = self._connect(client)
        try:
            while conn is not None and self._running():
                if pausing:
                    time.sleep(rng.uniform(0, self.max_pause))
                    if not self._running():
                        break
                try:
                    if conn.closed_while_idle():
                        raise Failure("closed while idle", "keep-alive connection closed "
                                      "by the proxy between requests, unannounced")
                    status, close = conn.exchange(self.request_bytes)
                    if status != 200:
                        raise Failure("status %d" % status, "answered %d" % status)
                except Failure as failure:
                    self._record_failure(client, failure)
                    conn.close()
                    conn = self._connect(client)
                    continue
                self._record_ok(client)
                if close:
                    with self.lock:
                        self.announced_closes += 1
                    conn.close()
                    conn = self._connect(client)
        finally:
            if conn is not None:
                conn.close()

    def _connector(self, client):
        while self._running():
            conn = None
            try:
                conn = Connection(self.port, self.timeout)
                with self.lock:
                    self.connects[self.role(client)] += 1
                status, _ = conn.exchange(self.close_bytes)
                if status != 200:
                    raise Failure("status %d" % status, "answered %d" % status)
                self._record_ok(client)
            except Failure as failure:
                self._record_failure(client, failure)
                time.sleep(0.01)
            finally:
                if conn is not None:
                    conn.close()

    # ---- results

    @property
    def total_ok(self):
        return sum(self.ok.values())

    @property
    def total_failed(self):
        return sum(self.failures.values())

    def failed(self, role=None):
        return sum(n for (r, _), n in self.failures.items() if role is None or r == role)

    def wait_for(self, count, timeout=15.0):
        """Waits until `count` more requests completed than now; True when they did."""
        target = self.total_ok + count
        return harness.wait_until(lambda: self.total_ok >= target, timeout, interval=0.05)

    def stop(self):
        self.stopping.set()
        for thread in self.threads:
            thread.join(self.timeout + 5)

    def summary(self):
        with self.lock:
            failures = ", ".join("%s %s: %d" % (r, k, n) for (r, k), n in
                                 sorted(self.failures.items())) or "none"
            return ("%d ok (%s), %d failed (%s), %d announced closes, connects %s; first "
                    "failures:\n  %s" % (self.total_ok, dict(self.ok), self.total_failed,
                                         failures, self.announced_closes,
                                         dict(self.connects), "\n  ".join(self.samples)))
