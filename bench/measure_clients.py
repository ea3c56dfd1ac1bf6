"""The tiny clients of bench/measure.py: one keep-alive HTTP/1.1 connection and a RESP client
(pipelined commands), both on TCP_NODELAY loopback sockets.
"""
import socket


def connect(port, timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class HttpConn:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closed it."""

    def __init__(self, port):
        self.port = port
        self.sock = None
        self.buf = b""

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock, self.buf = None, b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.buf += data

    def request(self, host, path="/", method="GET"):
        """Returns (status, body)."""
        for attempt in (1, 2):
            if self.sock is None:
                self.sock = connect(self.port)
            try:
                self.sock.sendall(("%s %s HTTP/1.1\r\nHost: %s\r\n\r\n"
                                   % (method, path, host)).encode())
                return self._response()
            except (ConnectionError, OSError):
                self.close()          # a stale keep-alive connection: retry once on a new one
                if attempt == 2:
                    raise

    def _response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        if b"chunked" in headers.get(b"transfer-encoding", b""):
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                line, _, self.buf = self.buf.partition(b"\r\n")
                size = int(line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._fill()
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    break
        elif b"content-length" in headers:
            n = int(headers[b"content-length"])
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
        else:                                   # delimited by close
            try:
                while True:
                    self._fill()
            except ConnectionError:
                pass
            body, self.buf = self.buf, b""
            self.close()
        if headers.get(b"connection") == b"close" and self.sock:
            self.close()
        return status, body


class Redis:
    def __init__(self, port):
        self.sock = connect(port)
        self.rfile = self.sock.makefile("rb")

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def read_reply(self):
        line = self.rfile.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"-":
            raise RuntimeError("redis: " + rest.decode())
        if kind in (b"+", b":"):
            return rest
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.rfile.read(n + 2)[:-2]
        if kind == b"*":
            return [self.read_reply() for _ in range(max(int(rest), 0))]
        raise RuntimeError("redis: unexpected reply %r" % line)

    def call(self, *args):
        self.sock.sendall(self.encode(*args))
        return self.read_reply()

    def pipeline(self, commands):
        self.sock.sendall(b"".join(self.encode(*c) for c in commands))
        return [self.read_reply() for _ in commands]
