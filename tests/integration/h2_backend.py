"""An HTTP/2 cleartext backend (h2c with prior knowledge) built on python3-h2, for the tests of
h2c:// backends: it records every request it gets (pseudo-headers, fields, body, trailers) and
answers as the test says, or misbehaves (resets the stream, sends garbage). It counts the
connections it accepted and those the proxy closed (the pool tests); with `tls` (an
ssl.SSLContext offering ALPN h2) it is an h2:// backend."""
import socket
import threading

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings


class ReceivedRequest:
    def __init__(self):
        self.headers = []  # (name, value) in order, pseudo-headers included
        self.body = b""
        self.trailers = []
        self.ended = False
        self.refused = False  # answered with RST_STREAM REFUSED_STREAM, not processed
        self.connection = 0   # which accepted connection it came on (1, 2, ...)

    def field(self, name):
        values = [v for k, v in self.headers if k == name]
        return values[0] if values else None


class H2Backend:
    """`answer(request) -> (status, headers, body, trailers)` is called once a request ended;
    mode "reset" resets every stream instead, "garbage" answers bytes that are not HTTP/2.
    Misbehaviour on kept connections: "refuse_reused" refuses (REFUSED_STREAM) every stream
    after a connection's first once its request ended ("refuse_reused_at_header": at its
    header, whatever of the body follows); after each answer, "goaway_after_answer" sends a GOAWAY (and
    keeps the connection open), "garbage_after_answer" bytes that are not HTTP/2 frames,
    "close_after_answer" closes the connection, "ping_after_answer" a PING and new SETTINGS (a
    kept connection must acknowledge both: ping_acks, settings_acks)."""

    def __init__(self, answer=None, mode="answer", tls=None):
        self.answer = answer or (lambda request: (200, [("content-type", "text/plain")],
                                                  b"h2 backend", []))
        self.mode = mode
        self.requests = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.tls = tls
        self.url = "%s://127.0.0.1:%d" % ("h2" if tls else "h2c", self.port)
        self.connections = 0        # accepted (TLS: handshakes completed)
        self.closed_by_proxy = 0    # connections the proxy closed (the backend read its end)
        self.ping_acks = 0
        self.settings_acks = 0      # the connection preface's SETTINGS included
        self.open = []              # sockets of the connections being served
        self.lock = threading.Lock()
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(10)
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except OSError:
                conn.close()
                return
        with self.lock:
            self.connections += 1
            number = self.connections
            self.open.append(conn)
        if self.mode == "garbage":
            # What an HTTP/1.1 server says to the preface: a 400, then it closes.
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\nno")
            conn.close()
            return
        config = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        h2conn = h2.connection.H2Connection(config=config)
        h2conn.initiate_connection()
        conn.sendall(h2conn.data_to_send())
        streams = {}
        pending = {}  # stream id -> body still to send (flow control)
        goaway_sent = False
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    with self.lock:
                        self.closed_by_proxy += 1
                    return
                if goaway_sent:
                    continue  # (h2 refuses frames after its GOAWAY: a late SETTINGS ack)
                answered = []
                for event in h2conn.receive_data(data):
                    self._handle(h2conn, event, streams, pending, number, answered)
                self._send_pending(h2conn, pending)
                conn.sendall(h2conn.data_to_send())
                if answered and not pending and self.mode.endswith("_after_answer"):
                    if self.mode == "close_after_answer":
                        return
                    if self.mode == "garbage_after_answer":
                        conn.sendall(b"\xff" * 64)
                    elif self.mode == "ping_after_answer":
                        h2conn.ping(b"idle-png")
                        h2conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 7})
                        conn.sendall(h2conn.data_to_send())
                    else:
                        h2conn.close_connection(last_stream_id=answered[-1])
                        conn.sendall(h2conn.data_to_send())
                        goaway_sent = True
        except (OSError, h2.exceptions.ProtocolError):
            return
        finally:
            conn.close()

    def _handle(self, h2conn, event, streams, pending, number, answered):
        if isinstance(event, h2.events.PingAckReceived):
            with self.lock:
                self.ping_acks += 1
        elif isinstance(event, h2.events.SettingsAcknowledged):
            with self.lock:
                self.settings_acks += 1
        elif isinstance(event, h2.events.RequestReceived):
            request = ReceivedRequest()
            request.connection = number
            request.headers = list(event.headers)
            streams[event.stream_id] = request
            self.requests.append(request)
            if self.mode == "refuse_reused_at_header" and event.stream_id > 1:
                request.refused = True
                h2conn.reset_stream(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        elif isinstance(event, h2.events.DataReceived):
            streams[event.stream_id].body += event.data
            if not streams[event.stream_id].refused:
                h2conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            streams[event.stream_id].trailers = list(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            request = streams[event.stream_id]
            request.ended = True
            if request.refused:
                return
            if self.mode == "reset":
                h2conn.reset_stream(event.stream_id)
                return
            if self.mode == "refuse_reused" and event.stream_id > 1:
                request.refused = True
                h2conn.reset_stream(event.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                return
            answered.append(event.stream_id)
            status, headers, body, trailers = self.answer(request)
            h2conn.send_headers(event.stream_id, [(":status", str(status))] + list(headers),
                                end_stream=not body and not trailers)
            if body or trailers:
                pending[event.stream_id] = [body, trailers]

    def _send_pending(self, h2conn, pending):
        for stream_id in list(pending):
            body, trailers = pending[stream_id]
            while body:
                room = min(h2conn.local_flow_control_window(stream_id),
                           h2conn.max_outbound_frame_size, len(body))
                if room <= 0:
                    break
                h2conn.send_data(stream_id, body[:room], end_stream=room == len(body) and
                                 not trailers)
                body = body[room:]
            pending[stream_id][0] = body
            if not body:
                if trailers:
                    h2conn.send_headers(stream_id, trailers, end_stream=True)
                del pending[stream_id]

    def close_connections(self):
        """Closes every connection it serves (a backend's idle timeout)."""
        with self.lock:
            for conn in self.open:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.open = []

    def processed(self):
        """The requests it answered (not refused)."""
        return [r for r in self.requests if not r.refused]

    def stop(self):
        self.running = False
        self.sock.close()
