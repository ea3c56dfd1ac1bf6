"""HTTP/2 clients for the tests: curl (--http2, --http2-prior-knowledge) and a raw frame client
on python3-h2 for what curl will not send (floods, resets, oversized header blocks)."""
import json
import os
import socket
import ssl
import subprocess

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

import harness


def curl(url, *args, timeout=20):
    """Runs curl; returns (exit code, stdout bytes, stderr text)."""
    done = subprocess.run(["curl", "-sS", "--max-time", str(timeout)] + list(args) + [url],
                          capture_output=True, timeout=timeout + 10)
    return done.returncode, done.stdout, done.stderr.decode(errors="replace")


def parse_head_and_body(output):
    """Splits `curl -i` output of one HTTP/2 answer into (status, headers dict, body)."""
    head, _, body = output.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return status, headers, body


class RawH2:
    """A client connection that sends exactly the frames a test asks for and records every
    event the proxy's frames produce."""

    def __init__(self, port, tls_context=None, server_hostname=None, timeout=5):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls_context is not None:
            sock = tls_context.wrap_socket(sock, server_hostname=server_hostname)
        self.sock = sock
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                           validate_outbound_headers=False,
                                           normalize_outbound_headers=False,
                                           validate_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        self.flush()
        self.events = []
        self.closed = False

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.send_raw(data)

    def send_raw(self, data):
        """Sends bytes as they are; a proxy that already closed the connection is no error
        (the floods are sent until it does)."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True

    def send_body(self, stream_id, data, end=True, timeout=10):
        """Sends a request body within the flow-control windows the proxy grants."""
        sent = 0
        while sent < len(data):
            room = min(self.conn.local_flow_control_window(stream_id),
                       self.conn.max_outbound_frame_size, len(data) - sent)
            if room == 0:
                if not self.pump(lambda c: c.conn.local_flow_control_window(stream_id) > 0,
                                 timeout):
                    raise AssertionError("the proxy never opened the window again")
                continue
            self.conn.send_data(stream_id, data[sent:sent + room],
                                end_stream=end and sent + room == len(data))
            self.flush()
            sent += room

    def request(self, authority, path="/", method="GET", headers=(), body=None, end=True):
        """Opens a stream; returns its id."""
        stream_id = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", "http"), (":authority", authority),
                  (":path", path)] + list(headers)
        self.conn.send_headers(stream_id, fields, end_stream=end and body is None)
        if body is not None:
            self.conn.send_data(stream_id, body, end_stream=end)
        self.flush()
        return stream_id

    def pump(self, until, timeout=5):
        """Reads and handles frames until until(self) is true, the connection closes or the
        timeout passes. Returns until(self)."""
        self.sock.settimeout(timeout)
        while not until(self):
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, ConnectionResetError, ssl.SSLError):
                break
            if not data:
                self.closed = True
                break
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                self.closed = True
                break
            for event in events:
                self.events.append(event)
                if isinstance(event, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                        event.stream_id)
            self.flush()
        return until(self)

    def stream_ended(self, stream_id):
        return any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) and
                   e.stream_id == stream_id for e in self.events)

    def response(self, stream_id, timeout=5):
        """(status, headers dict, body, ended normally) of a stream, once it ended."""
        def over(c):
            goaway = c.goaway()  # streams up to its last_stream_id are still answered
            return (c.stream_ended(stream_id) or c.closed or
                    (goaway is not None and goaway.last_stream_id < stream_id))
        self.pump(over, timeout)
        status, headers, body, ended = None, {}, b"", False
        for event in self.events:
            if getattr(event, "stream_id", None) != stream_id:
                continue
            if isinstance(event, h2.events.ResponseReceived):
                headers = {k: v for k, v in event.headers}
                status = int(headers[":status"])
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
            elif isinstance(event, h2.events.StreamEnded):
                ended = True
        return status, headers, body, ended

    def resets(self):
        return [e for e in self.events if isinstance(e, h2.events.StreamReset)]

    def goaway(self):
        for event in self.events:
            if isinstance(event, h2.events.ConnectionTerminated):
                return event
        return None

    def close(self):
        self.sock.close()


def frame(frame_type, flags, stream_id, payload=b""):
    """One raw HTTP/2 frame (RFC 9113 section 4.1)."""
    return (len(payload).to_bytes(3, "big") + bytes([frame_type, flags]) +
            stream_id.to_bytes(4, "big") + payload)


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    0, 1, 2, 3, 4, 6, 7, 8, 9)
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


class Http2TestCase(harness.ProxyTestCase):
    def frontend(self, host="h2.test", backend=None):
        backend = backend or self.http_backend("h2-backend")
        self.redis.rpush("frontend:" + host, host, backend.url)
        return backend

    def raw(self, **kwargs):
        client = RawH2(self.proxy.port, **kwargs)
        self._stoppers.append(client.close)
        return client

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.proxy.port, path)

    def check_upload_with_length(self, curl_to, size):
        """Uploads `size` random bytes with `curl_to(path, *args)`; the echo backend got them
        all, announced by a Content-Length."""
        path = os.path.join(self.workdir, "payload")
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        code, out, err = curl_to("/upload", "--data-binary", "@" + path)
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)["body_length"], size)

    def check_large_answers(self, curl_to):
        """3 MB with a length, 300 KB chunked and a small answer, each whole."""
        for query in ("size=3000000", "size=300000&chunked=1", "size=10"):
            code, out, err = curl_to("/big?" + query, "-o", "-", "-w", "\n%{http_code}")
            self.assertEqual(code, 0, (query, err))
            body, _, status = out.rpartition(b"\n")
            self.assertEqual(status, b"200")
            self.assertEqual(len(body), int(query.split("=")[1].split("&")[0]), query)
