"""Command line and config file (SPEC sections 1 and 2), on the real binary."""
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import tempfile
import subprocess
import unittest

import harness

PASSPHRASE = "Pa55-phrase-that-must-never-be-printed"
REDIS_SECRET = "redis-secret-that-must-never-be-printed"


def run(args, cwd=None, env=None, timeout=15):
    full_env = dict(os.environ)
    full_env.pop("SETTINGS_FLAVOR", None)
    full_env.update(env or {})
    return subprocess.run([harness.BINARY] + args, cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def find_values(tree, name):
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key == name:
                yield value
            else:
                yield from find_values(value, name)
    elif isinstance(tree, list):
        for item in tree:
            yield from find_values(item, name)


def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Launched:
    """The binary started with arbitrary arguments, cwd and environment (harness.Proxy always
    passes -c and expects http.port)."""

    def __init__(self, workdir, args, port, host="127.0.0.1", cwd=None, env=None):
        full_env = dict(os.environ)
        full_env.pop("SETTINGS_FLAVOR", None)
        full_env.update(env or {})
        self.stderr_path = os.path.join(workdir, "launched-stderr.log")
        self.stderr = open(self.stderr_path, "wb")
        self.process = subprocess.Popen([harness.BINARY] + args, cwd=cwd, env=full_env,
                                        stdout=subprocess.DEVNULL, stderr=self.stderr)
        self.port = port
        try:
            harness.wait_for_port(port, host=host, process=self.process)
        except Exception:
            self.stop()
            raise RuntimeError("proxy did not start; stderr:\n" + self.log())

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
        self.stderr.close()


class CliTestCase(harness.ProxyTestCase):
    def write_config(self, config, name="config.json", directory=None):
        path = os.path.join(directory or self.workdir, name)
        with open(path, "w") as f:
            json.dump(config, f) if not isinstance(config, str) else f.write(config)
        return path

    def launch(self, args, port, **kwargs):
        launched = Launched(self.workdir, args, port, **kwargs)
        self._stoppers.append(launched.stop)
        return launched

    def get(self, port, host, path="/", address="127.0.0.1"):
        conn = http.client.HTTPConnection(address, port, timeout=10)
        try:
            conn.request("GET", path, headers={"Host": host})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def plain_config(self, port, **server):
        section = {"accessLog": "", "workers": 1, "tcpTimeout": 5}
        section.update(server)
        return {"server": section, "http": {"port": port, "bind": ["127.0.0.1"]},
                "driver": self.redis_server.url(), "user": "root"}

    def assert_one_line_error(self, result, *needles):
        self.assertNotEqual(result.returncode, 0)
        lines = [l for l in result.stderr.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, "expected one line on stderr, got:\n" + result.stderr)
        for needle in needles:
            self.assertIn(needle, lines[0])
        return lines[0]


class Flags(CliTestCase):
    def test_help(self):
        for flag in ["--help", "-h"]:
            result = run([flag])
            self.assertEqual(result.returncode, 0, result.stderr)
            for option in ["--config", "--dry", "--help", "--version"]:
                self.assertIn(option, result.stdout)

    def test_version(self):
        for flag in ["--version", "-V"]:
            result = run([flag])
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertRegex(result.stdout.strip(), r"^hipache \d+\.\d+\.\d+")

    def test_unknown_option_fails(self):
        result = run(["--no-such-option"])
        self.assertNotEqual(result.returncode, 0)


class DryRun(CliTestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("openssl") is None:
            raise unittest.SkipTest("openssl is needed to make a TLS key")
        cls.tls_dir = tempfile.mkdtemp(prefix="hipache-tls-")
        cls.key = os.path.join(cls.tls_dir, "key.pem")
        cls.cert = os.path.join(cls.tls_dir, "cert.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-keyout", cls.key, "-out", cls.cert,
                        "-days", "2", "-subj", "/CN=localhost", "-passout", "pass:" + PASSPHRASE],
                       check=True, capture_output=True, timeout=30)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tls_dir, ignore_errors=True)

    def test_dry_prints_effective_config_with_secrets_censored(self):
        port = harness.free_port()
        tls_port = harness.free_port()
        config = {"server": {"tcpTimeout": 7, "workers": 3, "accessLog": ""},
                  "http": {"port": port, "bind": ["127.0.0.1"]},
                  "https": {"port": tls_port, "bind": ["127.0.0.1"], "key": self.key,
                            "cert": self.cert, "passphrase": PASSPHRASE},
                  "driver": "redis://:%s@127.0.0.1:%d" % (REDIS_SECRET, self.redis_server.port),
                  "user": "root"}
        path = self.write_config(config)
        for flag in ["--dry", "-d"]:
            result = run(["-c", path, flag])
            self.assertEqual(result.returncode, 0, result.stderr)
            effective = json.loads(result.stdout)
            self.assertNotIn(PASSPHRASE, result.stdout + result.stderr)
            self.assertNotIn(REDIS_SECRET, result.stdout + result.stderr)
            text = json.dumps(effective)
            passphrases = list(find_values(effective, "passphrase"))
            self.assertTrue(passphrases, "no passphrase field in the effective config")
            for value in passphrases:  # shown as set, but censored
                self.assertTrue(value)
                self.assertNotEqual(value, PASSPHRASE)
            self.assertEqual(effective["server"]["tcpTimeout"], 7)
            self.assertEqual(effective["server"]["workers"], 3)
            self.assertEqual(effective["server"]["maxSockets"], 100)       # default
            self.assertEqual(effective["server"]["deadBackendTTL"], 30)    # default
            self.assertEqual(effective["server"]["retryOnError"], 3)       # default
            self.assertIn(str(port), text)
            self.assertIn(str(tls_port), text)
            # a dry run binds nothing
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))

    def test_dry_fails_on_bad_config(self):
        path = self.write_config({"server": {"tcpTimeout": "abc"}})
        result = run(["--dry", "-c", path])
        self.assert_one_line_error(result, path, "server.tcpTimeout")
        self.assertEqual(result.stdout, "")


class ConfigErrors(CliTestCase):
    def test_missing_file(self):
        path = os.path.join(self.workdir, "does-not-exist.json")
        self.assert_one_line_error(run(["-c", path]), path)

    def test_invalid_json(self):
        path = self.write_config('{"server": {"tcpTimeout": 5,}')
        self.assert_one_line_error(run(["-c", path]), path)

    def test_wrong_type(self):
        port = harness.free_port()
        config = self.plain_config(port)
        config["server"]["tcpTimeout"] = "abc"
        path = self.write_config(config)
        self.assert_one_line_error(run(["-c", path]), path, "server.tcpTimeout")
        with socket.socket() as s:  # nothing was left bound
            s.bind(("127.0.0.1", port))

    def test_https_bind_without_key(self):
        port = harness.free_port()
        config = self.plain_config(port)
        config["https"] = {"port": harness.free_port(), "bind": ["127.0.0.1"]}
        path = self.write_config(config)
        self.assert_one_line_error(run(["-c", path]), path, "https.key")
        with socket.socket() as s:  # the http listener was not bound first
            s.bind(("127.0.0.1", port))

    def test_default_config_missing(self):
        # No -c and no config/config.json in the working directory.
        result = run([], cwd=self.workdir)
        self.assert_one_line_error(result, "config/config.json")
        result = run([], cwd=self.workdir, env={"SETTINGS_FLAVOR": "staging"})
        self.assert_one_line_error(result, "config/config_staging.json")


class ConfigDiscoveryAndLayouts(CliTestCase):
    def setUp(self):
        super().setUp()
        self.backend = self.http_backend("b")
        self.redis.rpush("frontend:cli.test", "cli", self.backend.url)

    def assert_serves(self, port, address="127.0.0.1"):
        status, body = self.get(port, "cli.test", "/served", address=address)
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body)["path"], "/served")

    def test_settings_flavor_selects_config_file(self):
        os.mkdir(os.path.join(self.workdir, "config"))
        default_port, test_port = harness.free_port(), harness.free_port()
        self.write_config(self.plain_config(default_port), "config.json",
                          os.path.join(self.workdir, "config"))
        self.write_config(self.plain_config(test_port), "config_test.json",
                          os.path.join(self.workdir, "config"))
        proxy = self.launch([], test_port, cwd=self.workdir, env={"SETTINGS_FLAVOR": "test"})
        self.assert_serves(test_port)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", default_port), timeout=1).close()
        proxy.stop()
        # and without SETTINGS_FLAVOR, config/config.json
        self.launch([], default_port, cwd=self.workdir)
        self.assert_serves(default_port)

    def test_legacy_03x_layout(self):
        port = harness.free_port()
        config = {"server": {"port": port, "address": ["127.0.0.1"], "accessLog": "",
                             "workers": 1, "tcpTimeout": 5},
                  "redisHost": "127.0.0.1", "redisPort": self.redis_server.port,
                  "user": "root"}
        path = self.write_config(config)
        proxy = self.launch(["-c", path], port)
        self.assert_serves(port)
        log = proxy.log().splitlines()
        for key in ["server.port", "server.address", "redisHost", "redisPort"]:
            matching = [l for l in log if key + " " in l and "deprecated" in l]
            self.assertEqual(len(matching), 1, "one deprecation line for %s in:\n%s"
                             % (key, "\n".join(log)))

    def test_legacy_redis_database_and_password(self):
        self.redis_server.stop()
        self.redis_server = harness.RedisServer(password="legacy-pw")
        self.redis = self.redis_server.client
        self.redis.call("SELECT", "2")
        self.redis.rpush("frontend:cli.test", "cli", self.backend.url)
        port = harness.free_port()
        config = {"server": {"accessLog": "", "workers": 1},
                  "http": {"port": port, "bind": ["127.0.0.1"]},
                  "redisHost": "127.0.0.1", "redisPort": str(self.redis_server.port),
                  "redisPassword": "legacy-pw", "redisDatabase": 2, "user": "root"}
        proxy = self.launch(["-c", self.write_config(config)], port)
        self.assert_serves(port)
        self.assertNotIn("legacy-pw", proxy.log())
        self.assertIn("redisDatabase", proxy.log())

    def test_unknown_keys_warn_but_start(self):
        port = harness.free_port()
        config = self.plain_config(port, someFutureOption=True)
        config["notAHipacheKey"] = {"x": 1}
        proxy = self.launch(["-c", self.write_config(config)], port)
        self.assert_serves(port)
        log = proxy.log()
        self.assertIn("someFutureOption", log)
        self.assertIn("notAHipacheKey", log)

    def test_ipv6_bind(self):
        if not have_ipv6_loopback():
            self.skipTest("no ::1 on this machine")
        port, port2 = harness.free_port(), harness.free_port()
        config = self.plain_config(port)
        config["http"]["bind"] = ["::1", {"address": "127.0.0.1", "port": port2}]
        self.launch(["-c", self.write_config(config)], port, host="::1")
        self.assert_serves(port, address="::1")
        self.assert_serves(port2)
        # the client address as seen by the backend is the IPv6 one, unprefixed
        headers = self.backend.requests[0]["headers"]
        self.assertEqual(headers["X-Real-IP"], "::1")
        self.assertEqual(headers["X-Forwarded-For"], "::1")

    def test_ipv6_bind_bracketed_object(self):
        if not have_ipv6_loopback():
            self.skipTest("no ::1 on this machine")
        port = harness.free_port()
        config = self.plain_config(port)
        config["http"]["bind"] = [{"address": "[::1]", "port": port}]
        self.launch(["-c", self.write_config(config)], port, host="::1")
        self.assert_serves(port, address="::1")


if __name__ == "__main__":
    unittest.main()


class RunScript(CliTestCase):
    """The README's first command: scripts/run.sh validates the config, starts a local
    redis-server when the configured one does not answer, tells how to add a frontend, and runs
    the proxy. It uses build/hipache (the test command builds it first)."""

    def test_starts_redis_when_unreachable_and_serves(self):
        root = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
        port, redis_port = harness.free_port(), harness.free_port()
        config = self.plain_config(port)
        config["driver"] = "redis://127.0.0.1:%d" % redis_port
        path = self.write_config(config)
        output_path = os.path.join(self.workdir, "run.log")
        with open(output_path, "wb") as output:
            script = subprocess.Popen(["bash", os.path.join(root, "scripts", "run.sh"), path],
                                      cwd=root, stdout=output, stderr=subprocess.STDOUT,
                                      start_new_session=True)

        def stop():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(script.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                script.wait(10)
            with contextlib.suppress(Exception):
                harness.RedisClient(redis_port).call("SHUTDOWN", "NOSAVE")
        self.addCleanup(stop)

        harness.wait_for_port(port, timeout=240, process=script)
        with open(output_path) as f:
            said = f.read()
        self.assertIn("starting a local redis-server", said)
        self.assertIn("rpush frontend:", said)
        backend = self.http_backend("runbackend")
        redis = harness.RedisClient(redis_port)
        self.addCleanup(redis.close)
        redis.rpush("frontend:www.run.test", "run", backend.url)
        self.assertTrue(harness.wait_until(
            lambda: self.get(port, "www.run.test")[0] == 200, timeout=10))
        self.assertEqual(self.get(port, "__ping__"), (200, b"ok"))
