"""A raw HTTP/1.x client for the integration tests: bytes out exactly as written, responses read
one at a time exactly as the proxy framed them (no http.client normalisation in between).
"""
import contextlib
import json
import socket
import time


class Response:
    def __init__(self, version, status, reason, headers, body, chunked, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers      # list of (name, value) as received
        self.body = body
        self.chunked = chunked      # the body came with chunked framing
        self.raw_head = raw_head

    def get_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def get(self, name, default=None):
        values = self.get_all(name)
        return values[0] if values else default

    def connection_tokens(self):
        tokens = set()
        for value in self.get_all("Connection"):
            tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
        return tokens

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %s %s %r body=%d bytes>" % (self.status, self.reason, self.headers,
                                                      len(self.body))


class ProtocolError(Exception):
    pass


class RawClient:
    """One client connection to the proxy: send raw bytes, read responses one at a time
    (status line, headers, body framed by HEAD/1xx/204/304, chunked, Content-Length or close)."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def close(self):
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _line(self, limit=200000):
        line = self.file.readline(limit)
        if not line:
            raise EOFError("connection closed by the proxy")
        if not line.endswith(b"\n"):
            raise ProtocolError("unterminated line %r" % line[:200])
        return line

    def read_response(self, head_request=False):
        line = self._line()
        raw = line
        parts = line.rstrip(b"\r\n").split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise ProtocolError("bad status line %r" % line[:200])
        version, status = parts[0].decode(), int(parts[1])
        reason = parts[2].decode(errors="replace") if len(parts) > 2 else ""
        headers = []
        while True:
            line = self._line()
            raw += line
            if line in (b"\r\n", b"\n"):
                break
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ProtocolError("bad header line %r" % line[:200])
            headers.append((name.strip(), value.strip()))
        response = Response(version, status, reason, headers, b"", False, raw)
        if head_request or status < 200 or status in (204, 304):
            return response
        te = ",".join(response.get_all("Transfer-Encoding")).lower()
        if te:
            if not te.replace(" ", "").endswith("chunked"):
                raise ProtocolError("transfer-encoding %r without chunked" % te)
            response.chunked = True
            body = []
            while True:
                size_line = self._line()
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self._line() not in (b"\r\n", b"\n"):
                        pass
                    break
                body.append(self._read_exact(size))
                if self._line() not in (b"\r\n", b"\n"):
                    raise ProtocolError("chunk not followed by CRLF")
            response.body = b"".join(body)
        elif response.get("Content-Length") is not None:
            response.body = self._read_exact(int(response.get("Content-Length")))
        else:
            response.body = self.file.read()  # delimited by the connection closing
        return response

    def read_final_response(self, head_request=False):
        """Skips interim 1xx responses; returns (final, [interim...])."""
        interim = []
        while True:
            response = self.read_response(head_request)
            if response.status >= 200:
                return response, interim
            interim.append(response)

    def _read_exact(self, n):
        data = self.file.read(n)
        if len(data) != n:
            raise ProtocolError("body truncated: %d of %d bytes" % (len(data), n))
        return data

    def wait_closed(self, timeout):
        """True when the proxy closes the connection (EOF or reset) within `timeout` seconds
        and sends nothing more; False when it is still open. Ends the use of this client."""
        self.sock.settimeout(timeout)
        try:
            extra = self.file.read(1)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        if extra:
            raise ProtocolError("unexpected bytes after the response: %r" % extra)
        return True


def exchange_until_close(port, data, timeout=5):
    """Sends raw bytes (ignoring a reset while sending) and reads until the proxy closes.
    Returns (bytes read, closed) where closed is False when the timeout hit first."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        out = b""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return out, False
            except ConnectionResetError:
                return out, True
            if not chunk:
                return out, True
            out += chunk
        return out, False


def status_of(raw):
    if not raw.startswith(b"HTTP/"):
        return None
    return int(raw.split(b" ", 2)[1])
