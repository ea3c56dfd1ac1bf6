"""Error responses (SPEC section 7) and the access log (SPEC section 8), on the real binary."""
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import unittest

import harness
from harness import silent

LINE = re.compile(
    r'^(?P<remote>\S+) - - \[(?P<date>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}) \+0000\] '
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" '
    r'"(?P<agent>[^"]*)" "(?P<identifier>[^"]*)" (?P<total>[\d.]+) (?P<backend>[\d.]+)$')

DEBUG_HEADERS = ["x-debug-backend-url", "x-debug-backend-id", "x-debug-vhost",
                 "x-debug-frontend-key", "x-debug-time-total", "x-debug-time-backend",
                 "x-debug-version-hipache"]


def binary_version():
    out = subprocess.run([harness.BINARY, "--version"], capture_output=True, text=True,
                         timeout=10).stdout.strip()
    return out.split()[-1]


class StdoutProxy:
    """The binary with its standard output captured (harness.Proxy discards it)."""

    def __init__(self, config, workdir):
        self.port = config["http"]["port"]
        self.config_path = os.path.join(workdir, "config-stdout.json")
        with open(self.config_path, "w") as f:
            json.dump(config, f)
        self.stderr_path = os.path.join(workdir, "stderr.log")
        self.stderr = open(self.stderr_path, "wb")
        self.process = subprocess.Popen([harness.BINARY, "-c", self.config_path],
                                        stdout=subprocess.PIPE, stderr=self.stderr)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        harness.wait_for_port(self.port, process=self.process)

    def _read(self):
        for raw in self.process.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def signal(self, sig):
        self.process.send_signal(sig)

    def log(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(5)
        self.process.stdout.close()
        self.stderr.close()


def raw_request(port, data, timeout=5):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


# --------------------------------------------------------------------------- error responses

class ErrorResponses(harness.ProxyTestCase):
    def assert_error_headers(self, headers):
        self.assertEqual(headers.get("content-type"), "text/html")
        self.assertEqual(headers.get("cache-control"), "no-cache")
        self.assertEqual(headers.get("pragma"), "no-cache")
        self.assertEqual(headers.get("expires"), "-1")

    def setup_frontends(self, **server):
        self.start_proxy(**server)
        self.redis.rpush("frontend:bad.test", "bad", harness.refused_url())
        self.redis.rpush("frontend:slow.test", "slow", self.raw_backend(silent).url)

    def test_builtin_pages(self):
        self.setup_frontends(tcpTimeout=1)
        for host, code in [("nowhere.test", 400), ("bad.test", 502), ("slow.test", 504)]:
            status, headers, body = self.request("GET", "/", host=host, timeout=20)
            self.assertEqual(status, code, host)
            self.assert_error_headers(headers)
            text = body.decode()
            self.assertIn("<html", text.lower())
            self.assertIn(str(code), text)
            self.assertEqual(int(headers["content-length"]), len(body))
            for name in ["x-debug-error"] + DEBUG_HEADERS:
                self.assertNotIn(name, headers, "%s sent without X-Debug" % name)

    def test_missing_host_http10_is_400_with_error_headers(self):
        self.start_proxy()
        raw = self.raw_exchange(b"GET / HTTP/1.0\r\n\r\n")
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.assertRegex(lines[0], r"^HTTP/1\.[01] 400 ")
        headers = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
        self.assert_error_headers(headers)
        self.assertIn(b"400", body)

    def test_header_too_large_gets_error_headers(self):
        self.start_proxy()
        # An unfinished header block over the 64 KB limit; nothing more is sent, so the proxy
        # reads all of it and its close is not turned into a reset by unread bytes.
        with socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x.test\r\nX-Big: " + b"a" * 70000)
            raw = b""
            while b"\r\n\r\n" not in raw:
                chunk = s.recv(65536)
                if not chunk:
                    break
                raw += chunk
        head, _, _ = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        self.assertRegex(lines[0], r"^HTTP/1\.1 431 ")
        headers = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
        self.assert_error_headers(headers)

    def test_unparsable_requests_get_400_with_error_headers(self):
        self.start_proxy()
        for data in [b"GARBAGE\r\n\r\n",
                     b"GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\n"
                     b"Content-Length: 2\r\n\r\nab"]:
            raw = self.raw_exchange(data)
            head, _, body = raw.partition(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            self.assertRegex(lines[0], r"^HTTP/1\.1 400 ", data)
            headers = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
            self.assert_error_headers(headers)
            self.assertIn(b"400", body)

    def test_static_dir_pages(self):
        static = os.path.join(self.workdir, "static")
        os.mkdir(static)
        with open(os.path.join(static, "error_502.html"), "w") as f:
            f.write("<html><body>custom five-oh-two</body></html>\n")
        with open(os.path.join(static, "error_default.html"), "w") as f:
            f.write("<html><body>custom default page</body></html>\n")
        self.setup_frontends(tcpTimeout=1, staticDir=static)
        status, headers, body = self.request("GET", "/", host="bad.test")
        self.assertEqual(status, 502)
        self.assertEqual(body, b"<html><body>custom five-oh-two</body></html>\n")
        self.assert_error_headers(headers)
        status, headers, body = self.request("GET", "/", host="nowhere.test")
        self.assertEqual(status, 400)
        self.assertEqual(body, b"<html><body>custom default page</body></html>\n")
        self.assert_error_headers(headers)
        status, headers, body = self.request("GET", "/", host="slow.test", timeout=20)
        self.assertEqual(status, 504)
        self.assertEqual(body, b"<html><body>custom default page</body></html>\n")

    def test_static_dir_without_default_falls_back_to_builtin(self):
        static = os.path.join(self.workdir, "static")
        os.mkdir(static)
        with open(os.path.join(static, "error_502.html"), "w") as f:
            f.write("custom 502\n")
        self.setup_frontends(staticDir=static)
        status, _, body = self.request("GET", "/", host="bad.test")
        self.assertEqual((status, body), (502, b"custom 502\n"))
        status, headers, body = self.request("GET", "/", host="nowhere.test")
        self.assertEqual(status, 400)
        self.assertIn(b"400", body)
        self.assertIn(b"<html", body.lower())


class DebugHeaders(harness.ProxyTestCase):
    def test_error_responses_get_x_debug_error(self):
        self.start_proxy(tcpTimeout=1)
        self.redis.rpush("frontend:bad.test", "bad", harness.refused_url())
        self.redis.rpush("frontend:slow.test", "slow", self.raw_backend(silent).url)
        for host, code in [("nowhere.test", 400), ("bad.test", 502), ("slow.test", 504)]:
            status, headers, _ = self.request("GET", "/", host=host, headers={"X-Debug": "1"},
                                              timeout=20)
            self.assertEqual(status, code)
            self.assertTrue(headers.get("x-debug-error"), "%s: no x-debug-error" % host)
            status, headers, _ = self.request("GET", "/", host=host, timeout=20)
            self.assertNotIn("x-debug-error", headers)
        # distinct reasons for distinct failures
        reasons = set()
        for host in ["nowhere.test", "bad.test", "slow.test"]:
            _, headers, _ = self.request("GET", "/", host=host, headers={"X-Debug": "yes"},
                                         timeout=20)
            reasons.add(headers["x-debug-error"])
        self.assertEqual(len(reasons), 3, reasons)

    def test_proxied_response_debug_headers(self):
        self.start_proxy()
        dead = harness.refused_url()
        backend = self.http_backend("b")
        self.redis.rpush("frontend:*.dbg.test", "the-vhost", dead, backend.url)
        self.redis.sadd("dead:www.dbg.test", "0")
        status, headers, body = self.request("GET", "/?delay=0.2", host="WWW.Dbg.Test.:8080",
                                             headers={"X-Debug": "true"})
        self.assertEqual(status, 200)
        self.assertEqual(headers["x-debug-backend-url"], backend.url)
        self.assertEqual(headers["x-debug-backend-id"], "1")
        self.assertEqual(headers["x-debug-vhost"], "the-vhost")
        self.assertEqual(headers["x-debug-frontend-key"], "www.dbg.test")
        self.assertEqual(headers["x-debug-version-hipache"], binary_version())
        total = float(headers["x-debug-time-total"])
        backend_ms = float(headers["x-debug-time-backend"])
        self.assertGreaterEqual(backend_ms, 190)   # milliseconds, the backend slept 200
        self.assertLess(backend_ms, 5000)
        self.assertGreaterEqual(total, backend_ms)
        self.assertNotIn("x-debug-error", headers)

    def test_no_debug_headers_without_x_debug(self):
        self.start_proxy()
        backend = self.http_backend("b")
        self.redis.rpush("frontend:dbg.test", "vhost", backend.url)
        status, headers, _ = self.request("GET", "/", host="dbg.test")
        self.assertEqual(status, 200)
        for name in headers:
            self.assertFalse(name.startswith("x-debug"), name)


# --------------------------------------------------------------------------- access log

class AccessLog(harness.ProxyTestCase):
    def parse(self, line):
        m = LINE.match(line)
        self.assertIsNotNone(m, "bad access log line: %r" % line)
        return m

    def test_exact_format(self):
        self.start_proxy()
        backend = self.http_backend("b")
        self.redis.rpush("frontend:log.test", "ident", backend.url)
        status, _, body = self.request("GET", "/p?q=1", host="log.test",
                                       headers={"Referer": "ref", "User-Agent": "ua"})
        self.assertEqual(status, 200)
        lines = self.access_log_lines(expected=1)
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(
            lines[0],
            r'^::ffff:127\.0\.0\.1 - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000\] '
            r'"GET /p\?q=1 HTTP/1\.1" 200 \d+ "ref" "ua" "ident" [\d.]+ [\d.]+$')
        # the date is now, in UTC
        stamp = time.strptime(self.parse(lines[0]).group("date"), "%d/%b/%Y:%H:%M:%S")
        self.assertLess(abs(time.mktime(stamp) - time.mktime(time.gmtime())), 60)

    def test_empty_referer_and_agent_and_seconds(self):
        self.start_proxy()
        backend = self.http_backend("b")
        self.redis.rpush("frontend:log.test", "ident", backend.url)
        raw_request(self.proxy.port,
                    b"GET /slow?delay=0.3 HTTP/1.1\r\nHost: log.test\r\nConnection: close\r\n\r\n")
        lines = self.access_log_lines(expected=1)
        m = self.parse(lines[0])
        self.assertEqual((m.group("referer"), m.group("agent")), ("", ""))
        total, backend_s = float(m.group("total")), float(m.group("backend"))
        self.assertGreaterEqual(backend_s, 0.29)  # seconds, not milliseconds
        self.assertLess(total, 5)
        self.assertGreaterEqual(total, backend_s)

    def test_client_x_real_ip_is_logged(self):
        self.start_proxy()
        backend = self.http_backend("b")
        self.redis.rpush("frontend:log.test", "ident", backend.url)
        cases = [("10.1.2.3", "::ffff:10.1.2.3"),
                 ("::ffff:10.9.9.9", "::ffff:10.9.9.9"),
                 ("2001:db8::5", "2001:db8::5")]
        for sent, _ in cases:
            status, _, body = self.request("GET", "/", host="log.test",
                                           headers={"X-Real-IP": sent})
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["headers"]["X-Real-IP"], sent)  # forwarded as is
        lines = self.access_log_lines(expected=len(cases))
        self.assertEqual([self.parse(l).group("remote") for l in lines],
                         [logged for _, logged in cases])

    def test_unmatched_host_logged_and_ping_not_logged(self):
        self.start_proxy()
        status, _, body = self.request("GET", "/", host="__ping__")
        self.assertEqual((status, body), (200, b"ok"))
        status, _, _ = self.request("GET", "/missing", host="nowhere.test",
                                    headers={"User-Agent": "probe"})
        self.assertEqual(status, 400)
        self.request("GET", "/", host="__ping__:80")
        lines = self.access_log_lines(expected=1)
        time.sleep(0.3)  # a ping line, if any, would have been flushed by now
        lines = self.access_log_lines()
        self.assertEqual(len(lines), 1, lines)
        m = self.parse(lines[0])
        self.assertEqual(m.group("request"), "GET /missing HTTP/1.1")
        self.assertEqual(m.group("status"), "400")
        self.assertEqual(m.group("identifier"), "-")
        self.assertEqual(m.group("agent"), "probe")

    def test_bytes_field_is_what_the_client_received(self):
        self.start_proxy()
        backend = self.http_backend("b")
        self.redis.rpush("frontend:log.test", "ident", backend.url)
        self.redis.rpush("frontend:bad.test", "bad", harness.refused_url())
        requests = [b"GET /?size=1234 HTTP/1.1\r\nHost: log.test\r\nConnection: close\r\n\r\n",
                    b"GET /?size=50000&chunked=1 HTTP/1.1\r\nHost: log.test\r\n"
                    b"Connection: close\r\n\r\n",
                    b"GET /?size=300 HTTP/1.0\r\nHost: log.test\r\n\r\n",
                    b"HEAD /?size=300 HTTP/1.1\r\nHost: log.test\r\nConnection: close\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: nowhere.test\r\nConnection: close\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: bad.test\r\nConnection: close\r\n\r\n"]
        received = []
        for data in requests:
            received.append(len(raw_request(self.proxy.port, data)))
        lines = self.access_log_lines(expected=len(requests))
        self.assertEqual(len(lines), len(requests), lines)
        self.assertEqual([int(self.parse(l).group("bytes")) for l in lines], received)
        self.assertEqual([self.parse(l).group("status") for l in lines],
                         ["200", "200", "200", "200", "400", "502"])

    def test_request_line_keeps_the_client_http_version(self):
        self.start_proxy()
        backend = self.http_backend("b")
        self.redis.rpush("frontend:log.test", "ident", backend.url)
        raw_request(self.proxy.port, b"GET /old HTTP/1.0\r\nHost: log.test\r\n\r\n")
        raw_request(self.proxy.port, b"GET /nowhere HTTP/1.0\r\nHost: nowhere.test\r\n\r\n")
        lines = self.access_log_lines(expected=2)
        self.assertEqual([self.parse(l).group("request") for l in lines],
                         ["GET /old HTTP/1.0", "GET /nowhere HTTP/1.0"])

    def test_sigusr1_reopens_the_file(self):
        self.start_proxy()
        backend = self.http_backend("b")
        self.redis.rpush("frontend:log.test", "ident", backend.url)
        self.request("GET", "/before", host="log.test")
        self.access_log_lines(expected=1)
        rotated = self.access_log_path + ".1"
        os.rename(self.access_log_path, rotated)
        self.request("GET", "/between", host="log.test")  # still goes to the renamed file
        self.proxy.signal(signal.SIGUSR1)
        self.assertTrue(harness.wait_until(lambda: os.path.exists(self.access_log_path), 5),
                        "SIGUSR1 did not recreate the access log")
        self.request("GET", "/after1", host="log.test")
        self.request("GET", "/after2", host="log.test")
        lines = self.access_log_lines(expected=2)
        self.assertEqual([self.parse(l).group("request") for l in lines],
                         ["GET /after1 HTTP/1.1", "GET /after2 HTTP/1.1"])
        with open(rotated) as f:
            old = [self.parse(l).group("request") for l in f.read().splitlines()]
        self.assertEqual(old, ["GET /before HTTP/1.1", "GET /between HTTP/1.1"])
        self.assertIsNone(self.proxy.process.poll(), "SIGUSR1 killed the proxy")

    def test_stdout(self):
        for destination in ["-", "stdout"]:
            with self.subTest(destination=destination):
                self.redis.rpush("frontend:log.test", "ident", self.http_backend("b").url)
                self.proxy = StdoutProxy(self.config(accessLog=destination), self.workdir)
                self.request("GET", "/one", host="log.test", headers={"User-Agent": "ua1"})
                self.request("GET", "/two", host="nowhere.test")
                harness.wait_until(lambda: len(self.proxy.lines) >= 2, 3)
                self.assertEqual(len(self.proxy.lines), 2, self.proxy.lines)
                self.assertEqual(self.parse(self.proxy.lines[0]).group("request"),
                                 "GET /one HTTP/1.1")
                self.assertEqual(self.parse(self.proxy.lines[1]).group("status"), "400")
                self.assertFalse(os.path.exists(os.path.join(self.workdir, destination)))
                self.proxy.stop()
                self.proxy = None
                self.redis.call("DEL", "frontend:log.test")

    def test_disabled(self):
        default = "/var/log/hipache/access.log"
        for destination in [None, ""]:
            with self.subTest(destination=destination):
                before = os.stat(default) if os.path.exists(default) else None
                self.redis.rpush("frontend:log.test", "ident", self.http_backend("b").url)
                self.proxy = StdoutProxy(self.config(accessLog=destination), self.workdir)
                status, _, _ = self.request("GET", "/one", host="log.test")
                self.assertEqual(status, 200)
                self.request("GET", "/two", host="nowhere.test")
                time.sleep(0.4)  # well past the 100 ms flush interval
                self.proxy.stop()
                self.assertEqual(self.proxy.lines, [])
                self.proxy = None
                self.assertEqual(os.listdir(self.workdir).count("access.log"), 0)
                after = os.stat(default) if os.path.exists(default) else None
                self.assertEqual(before and (before.st_size, before.st_mtime),
                                 after and (after.st_size, after.st_mtime))
                self.redis.call("DEL", "frontend:log.test")


if __name__ == "__main__":
    unittest.main()
