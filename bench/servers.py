#!/usr/bin/env python3
"""Benchmark backends that nginx cannot play easily, standard library only.

    servers.py sink   PORT   HTTP/1.1 server that reads and discards request bodies
                             (Content-Length or chunked) and answers 200 "ok"; keep-alive.
    servers.py wsecho PORT   minimal RFC 6455 WebSocket echo server: answers the Upgrade
                             handshake with 101, then echoes every data frame (unmasked, as a
                             server must), answers pings and closes.

Both listen on 127.0.0.1 and run until killed.  The WebSocket server is a single thread with
a selector (epoll), so 1,000 tunnels cost 1,000 sockets, not 1,000 threads.
"""

import base64
import hashlib
import selectors
import socket
import socketserver
import sys
import threading

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# --------------------------------------------------------------------------- sink

class SinkHandler(socketserver.BaseRequestHandler):
    BUF = 1 << 20

    def handle(self):
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rfile = sock.makefile("rb", buffering=self.BUF)
        scratch = bytearray(self.BUF)
        view = memoryview(scratch)
        try:
            while True:
                head = self._read_head(rfile)
                if head is None:
                    return
                lines = head.split(b"\r\n")
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower()] = value.strip()
                close = headers.get(b"connection", b"").lower() == b"close" or \
                    lines[0].endswith(b"HTTP/1.0")
                if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
                    self._discard_chunked(rfile, view)
                else:
                    self._discard(rfile, view, int(headers.get(b"content-length", b"0")))
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Content-Length: 2\r\n\r\nok")
                if close:
                    return
        except (OSError, ValueError):
            return

    @staticmethod
    def _read_head(rfile):
        lines = []
        while True:
            line = rfile.readline(65536)
            if not line:
                return None
            if line in (b"\r\n", b"\n"):
                if lines:
                    return b"".join(lines).rstrip(b"\r\n")
                continue
            lines.append(line)

    @staticmethod
    def _discard(rfile, view, n):
        while n > 0:
            got = rfile.readinto(view[:min(n, len(view))])
            if not got:
                raise ValueError("body ended early")
            n -= got

    def _discard_chunked(self, rfile, view):
        while True:
            size = int(rfile.readline(1024).split(b";")[0].strip(), 16)
            if size == 0:
                while rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass
                return
            self._discard(rfile, view, size + 2)


class ThreadingServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def run_sink(port):
    with ThreadingServer(("127.0.0.1", port), SinkHandler) as server:
        server.serve_forever()


# --------------------------------------------------------------------------- WebSocket echo

class WsConn:
    __slots__ = ("sock", "inbuf", "outbuf", "upgraded", "closing")

    def __init__(self, sock):
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.upgraded = False
        self.closing = False


def ws_handshake_reply(head):
    key = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            key = value.strip()
    if not key:
        return b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", False
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"), True


def ws_frame(opcode, payload):
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


def unmask(payload, mask):
    n = len(payload)
    if n == 0:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def ws_process(conn):
    """Consumes complete frames from conn.inbuf, appends replies to conn.outbuf."""
    buf = conn.inbuf
    pos = 0
    end = len(buf)
    while end - pos >= 2:
        b0, b1 = buf[pos], buf[pos + 1]
        n = b1 & 0x7F
        hdr = 2
        if n == 126:
            if end - pos < 4:
                break
            n = int.from_bytes(buf[pos + 2:pos + 4], "big")
            hdr = 4
        elif n == 127:
            if end - pos < 10:
                break
            n = int.from_bytes(buf[pos + 2:pos + 10], "big")
            hdr = 10
        masked = b1 & 0x80
        if masked:
            hdr += 4
        if end - pos < hdr + n:
            break
        payload = bytes(buf[pos + hdr:pos + hdr + n])
        if masked:
            payload = unmask(payload, bytes(buf[pos + hdr - 4:pos + hdr]))
        pos += hdr + n
        opcode = b0 & 0x0F
        if opcode == 0x8:                       # close: answer and finish
            conn.outbuf += ws_frame(0x8, payload[:2])
            conn.closing = True
            break
        if opcode == 0x9:                       # ping -> pong
            conn.outbuf += ws_frame(0xA, payload)
        elif opcode in (0x0, 0x1, 0x2):         # data (fragments echoed as they come)
            conn.outbuf += bytes((b0,)) + ws_frame(0, payload)[1:]
    del buf[:pos]


def run_wsecho(port):
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(4096)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, None)

    def drop(conn):
        try:
            sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def flush(conn):
        if conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf)
            except BlockingIOError:
                sent = 0
            del conn.outbuf[:sent]
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbuf else 0)
        if conn.closing and not conn.outbuf:
            drop(conn)
            return
        sel.modify(conn.sock, want, conn)

    while True:
        for key, events in sel.select():
            if key.data is None:
                while True:
                    try:
                        s, _ = lsock.accept()
                    except BlockingIOError:
                        break
                    s.setblocking(False)
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sel.register(s, selectors.EVENT_READ, WsConn(s))
                continue
            conn = key.data
            try:
                if events & selectors.EVENT_READ:
                    data = conn.sock.recv(262144)
                    if not data:
                        drop(conn)
                        continue
                    conn.inbuf += data
                    if not conn.upgraded:
                        i = conn.inbuf.find(b"\r\n\r\n")
                        if i < 0:
                            if len(conn.inbuf) > 65536:
                                drop(conn)
                            continue
                        reply, ok = ws_handshake_reply(bytes(conn.inbuf[:i]))
                        del conn.inbuf[:i + 4]
                        conn.outbuf += reply
                        conn.upgraded = ok
                        conn.closing = not ok
                    if conn.upgraded and conn.inbuf:
                        ws_process(conn)
                flush(conn)
            except (ConnectionError, OSError):
                drop(conn)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("sink", "wsecho"):
        sys.exit(__doc__)
    port = int(sys.argv[2])
    (run_sink if sys.argv[1] == "sink" else run_wsecho)(port)


if __name__ == "__main__":
    threading.current_thread().name = sys.argv[1] if len(sys.argv) > 1 else "main"
    main()
