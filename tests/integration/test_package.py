"""The Debian package (cpack -G DEB, packaging/package.cmake), built from the build directory of
the binary under test, checked, installed for real with dpkg, run (--version, --dry on the example
config, a real start that proxies a request and writes its access log as the config's user), then
purged. Needs root (dpkg); CI machines are throwaway, and the package is purged afterwards.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_package
"""
import contextlib
import fcntl
import glob
import grp
import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import unittest
import urllib.request

import harness

BUILD_DIR = os.path.dirname(os.path.abspath(harness.BINARY))
INSTALLED = "/usr/bin/hipache"
UNIT = "/usr/lib/systemd/system/hipache.service"
LOG_DIR = "/var/log/hipache"
LOCK = "/tmp/hipache-package-test.lock"  # two runs at once would share dpkg's database


def run(*args, timeout=120, check=True):
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s%s" % (" ".join(args), result.returncode,
                                                        result.stdout, result.stderr))
    return result


def installed():
    result = run("dpkg-query", "-W", "-f=${Status}", "hipache", check=False)
    return result.returncode == 0 and "installed" in result.stdout.split()


def needed_packages(binary):
    """For each shared library `binary` links (its NEEDED entries): the names that satisfy a
    dependency on it, the package holding it and what that package provides
    (libspdlog1.10 provides libspdlog1.10-fmt9, which its shlibs file names)."""
    dump = run("objdump", "-p", binary).stdout
    # Where the loader finds each one: a bare name may match other architectures' copies too
    # (libc6-i386 holds a /lib32/libm.so.6).
    resolved = dict(re.findall(r"^\s*(\S+) => (/\S+)", run("ldd", binary).stdout, re.M))
    needed = {}
    for library in re.findall(r"^\s*NEEDED\s+(\S+)$", dump, re.M):
        path = resolved[library]
        # dpkg knows a file by the path its package shipped: /lib or /usr/lib (merged /usr).
        for candidate in (path, "/usr" + path, os.path.realpath(path)):
            found = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if found.returncode == 0:
                break
        owner = found.stdout.split(":")[0].strip()
        provides = run("dpkg-query", "-W", "-f=${Provides}", owner).stdout
        needed[library] = {owner} | {p.split()[0] for p in provides.split(", ") if p.strip()}
    return needed


class DebianPackage(unittest.TestCase):
    def setUp(self):
        self.assertEqual(os.geteuid(), 0, "dpkg -i needs root: run this test as root")
        self.assertTrue(os.path.exists(os.path.join(BUILD_DIR, "CPackConfig.cmake")),
                        "no CPackConfig.cmake next to " + harness.BINARY)
        self.lock = open(LOCK, "w")
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        self.addCleanup(self.lock.close)
        self.workdir = tempfile.mkdtemp(prefix="hipache-package-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        # A package left by an interrupted run of this test goes first.
        if installed():
            run("dpkg", "--purge", "hipache")
        self.had_log_dir = os.path.exists(LOG_DIR)
        self.had_config = os.path.exists("/etc/hipache/config.json")

    def build_package(self):
        run("cpack", "-G", "DEB", "--config", os.path.join(BUILD_DIR, "CPackConfig.cmake"),
            "-B", self.workdir, timeout=300)
        [deb] = glob.glob(os.path.join(self.workdir, "hipache_*.deb"))
        return deb

    def check_contents(self, deb):
        info = run("dpkg-deb", "-I", deb).stdout
        self.assertRegex(info, r"(?m)^ Package: hipache$")
        self.assertRegex(info, r"(?m)^ Architecture: amd64$")
        version = run(harness.BINARY, "--version").stdout.split()[-1]
        self.assertRegex(info, r"(?m)^ Version: %s$" % re.escape(version))
        for script in ("postinst", "prerm", "postrm", "conffiles"):
            self.assertRegex(info, r"(?m)^\s+\d+ bytes,\s+\d+ lines\s+\*?\s*%s\b" % script, info)
        depends = re.search(r"(?m)^ Depends: (.*)$", info).group(1)
        depended = {d.split()[0] for d in depends.split(", ")}
        for library, names in needed_packages(harness.BINARY).items():
            self.assertTrue(names & depended, "Depends lacks %s for %s: %s" % (
                " or ".join(sorted(names)), library, depends))
        self.assertNotIn("boost", depends, "Boost is header-only here")

        listing = run("dpkg-deb", "-c", deb).stdout
        files = {line.split()[-1] for line in listing.splitlines()}
        for path in ["./usr/bin/hipache", "./usr/lib/systemd/system/hipache.service",
                     "./etc/hipache/config.example.json", "./etc/logrotate.d/hipache",
                     "./usr/share/doc/hipache/operations.md",
                     "./usr/share/doc/hipache/configuration.md",
                     "./usr/share/doc/hipache/copyright"]:
            self.assertIn(path, files)
        self.assertFalse([f for f in files if "/usr/local" in f], listing)

    def check_installed_files(self):
        self.assertTrue(os.access(INSTALLED, os.X_OK))
        with open(UNIT) as f:
            unit = f.read()
        self.assertIn("\nExecStart=/usr/bin/hipache --config /etc/hipache/config.json\n", unit)
        self.assertIn("\nConditionPathExists=/etc/hipache/config.json\n", unit)
        self.assertIn("Documentation=file:/usr/share/doc/hipache/operations.md", unit)
        self.assertNotIn("/usr/local/", unit)
        with open("/etc/logrotate.d/hipache") as f:
            rotate = f.read()
        self.assertIn("/var/log/hipache/*.log {", rotate)
        self.assertIn("systemctl kill -s USR1 --kill-who=main hipache.service", rotate)
        self.assertNotRegex(rotate, r"(?m)^\s*copytruncate")  # SIGUSR1 reopens instead
        info = os.stat(LOG_DIR)
        if not self.had_log_dir:
            self.assertEqual(pwd.getpwuid(info.st_uid).pw_name, "www-data")
            self.assertEqual(grp.getgrgid(info.st_gid).gr_name, "adm")
            self.assertEqual(stat.S_IMODE(info.st_mode), 0o750)
        conffiles = run("dpkg-query", "-W", "-f=${Conffiles}", "hipache").stdout
        self.assertIn(" /etc/hipache/config.example.json ", conffiles)
        self.assertIn(" /etc/logrotate.d/hipache ", conffiles)

    def serve_one_request(self):
        """The installed binary, started as root, drops to www-data and proxies a request."""
        redis = harness.RedisServer()
        self.addCleanup(redis.stop)
        backend = harness.HttpBackend("packaged")
        self.addCleanup(backend.stop)
        redis.client.rpush("frontend:pkg.test", "pkg", backend.url)
        log_path = os.path.join(LOG_DIR, "package-test-%d.log" % os.getpid())
        self.addCleanup(lambda: os.path.exists(log_path) and os.unlink(log_path))
        port = harness.free_port()
        config = {"server": {"workers": 1, "accessLog": log_path, "accessLogFormat": "json",
                             "requestIdHeader": "X-Request-Id"},
                  "http": {"port": port, "bind": ["127.0.0.1"]},
                  "driver": redis.url(), "user": "www-data"}
        config_path = os.path.join(self.workdir, "config.json")
        with open(config_path, "w") as f:
            json.dump(config, f)
        stderr = open(os.path.join(self.workdir, "stderr.log"), "wb")
        self.addCleanup(stderr.close)
        proxy = subprocess.Popen([INSTALLED, "-c", config_path], stdout=subprocess.DEVNULL,
                                 stderr=stderr)
        try:
            harness.wait_for_port(port, process=proxy)
            request = urllib.request.Request("http://127.0.0.1:%d/hello" % port,
                                             headers={"Host": "pkg.test",
                                                      "X-Request-Id": "from-package-test"})
            with urllib.request.urlopen(request, timeout=10) as response:
                self.assertEqual(response.status, 200)
                self.assertEqual(json.loads(response.read())["backend"], "packaged")
                self.assertEqual(response.headers["X-Request-Id"], "from-package-test")
            self.assertTrue(harness.wait_until(lambda: os.path.exists(log_path) and
                                               os.path.getsize(log_path) > 0, 5))
            with open(log_path) as f:
                [line] = [json.loads(l) for l in f.read().splitlines()]
            self.assertEqual(line["url"], "/hello")
            self.assertEqual(line["request_id"], "from-package-test")
            # Written by the worker after the drop: the log directory works for www-data.
            self.assertEqual(pwd.getpwuid(os.stat(log_path).st_uid).pw_name, "www-data")
        finally:
            proxy.send_signal(signal.SIGTERM)
            try:
                self.assertEqual(proxy.wait(20), 0)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait()
                raise

    def test_build_install_run_purge(self):
        deb = self.build_package()
        self.check_contents(deb)
        self.addCleanup(lambda: installed() and run("dpkg", "--purge", "hipache"))
        result = run("dpkg", "-i", deb)
        self.assertTrue(installed())
        if not self.had_config:
            # No config yet: installed, not started, and the operator is told what to do.
            self.assertIn("hipache: not started. Write /etc/hipache/config.json", result.stdout)
        self.check_installed_files()

        version = run(INSTALLED, "--version")
        self.assertEqual(version.stdout, run(harness.BINARY, "--version").stdout)
        dry = run(INSTALLED, "--dry", "-c", "/etc/hipache/config.example.json")
        self.assertEqual(json.loads(dry.stdout)["server"]["accessLog"],
                         "/var/log/hipache/access.log")
        self.serve_one_request()

        run("dpkg", "--purge", "hipache")
        self.assertFalse(installed())
        for path in [INSTALLED, UNIT, "/etc/logrotate.d/hipache",
                     "/etc/hipache/config.example.json"]:
            self.assertFalse(os.path.exists(path), path + " left after purge")
        if not self.had_log_dir:
            self.assertFalse(os.path.exists(LOG_DIR), "purge removes the logs")


if __name__ == "__main__":
    unittest.main()
