"""Redis topologies for the Sentinel, replica and Redis-TLS tests: redis-server processes with
any extra arguments (replicaof, TLS, ACL), and redis-sentinel processes watching a master, all on
loopback with free ports. Not a test module: test_sentinel.py, test_redis_replicas.py and
test_redis_tls.py use it.
"""
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile

from harness import RedisClient, free_port, wait_for_port, wait_until

MASTER_NAME = "mymaster"


class RedisNode:
    """One redis-server on a free port. `args` are extra command-line options."""

    def __init__(self, *args, port=None, tls_port=None):
        self.port = port if port is not None else free_port()
        self.tls_port = tls_port
        self.dir = tempfile.mkdtemp(prefix="hipache-redis-node-")
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--dir", self.dir, *args]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        wait_for_port(self.tls_port or self.port, process=self.process)
        self.client = RedisClient(self.port) if self.port else None

    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def reconnect(self):
        """A new client connection (the sentinels kill clients of a server they reconfigure)."""
        with contextlib.suppress(Exception):
            self.client.close()
        self.client = RedisClient(self.port)

    def kill(self):
        """SIGKILL: the server vanishes without a word, as in a crash."""
        with contextlib.suppress(Exception):
            self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self):
        with contextlib.suppress(Exception):
            self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def replica_of(master):
    """A replica of `master`, waited for until its link is up."""
    replica = RedisNode("--replicaof", "127.0.0.1", str(master.port))
    assert wait_until(lambda: link_status(replica) == "up", 15), "replica never synced"
    return replica


def link_status(replica):
    """master_link_status from INFO replication ("up"/"down"), or None on a master."""
    for line in replica.client.call("INFO", "replication").splitlines():
        if line.startswith("master_link_status:"):
            return line.split(":", 1)[1].strip()
    return None


class Sentinel:
    """One redis-sentinel monitoring MASTER_NAME at `master_port` (quorum 2, fast failover).
    With `tls` (config lines: tls-cert-file, ...) it listens with TLS only and reaches the
    servers over TLS; the test has no client on it then."""

    def __init__(self, master_port, quorum=2, tls=None):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="hipache-sentinel-")
        self.config = os.path.join(self.dir, "sentinel.conf")
        with open(self.config, "w") as f:
            if tls:
                f.write("port 0\ntls-port %d\ntls-replication yes\n%s\n" % (self.port, tls))
            else:
                f.write("port %d\n" % self.port)
            f.write("bind 127.0.0.1\ndir %s\n" % self.dir)
            f.write("sentinel monitor %s 127.0.0.1 %d %d\n" % (MASTER_NAME, master_port, quorum))
            f.write("sentinel down-after-milliseconds %s 1000\n" % MASTER_NAME)
            f.write("sentinel failover-timeout %s 4000\n" % MASTER_NAME)
            f.write("sentinel parallel-syncs %s 1\n" % MASTER_NAME)
        self.process = subprocess.Popen(["redis-sentinel", self.config],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, process=self.process)
        self.client = None if tls else RedisClient(self.port)

    def master(self):
        """(host, port) of the master as this sentinel sees it."""
        host, port = self.client.call("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
        return host, int(port)

    def stop(self):
        with contextlib.suppress(Exception):
            self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelSetup:
    """A master, one replica and three sentinels that know about each other and the replica."""

    def __init__(self):
        self.nodes = []
        self.sentinels = []
        self.master = self._node(RedisNode())
        self.replica = self._node(replica_of(self.master))
        for _ in range(3):
            self.sentinels.append(Sentinel(self.master.port))
        # A failover needs the sentinels to have found each other and the replica (hello
        # messages, every 2 s).
        ready = wait_until(lambda: all(
            len(s.client.call("SENTINEL", "sentinels", MASTER_NAME)) == 2 and
            len(s.client.call("SENTINEL", "replicas", MASTER_NAME)) == 1
            for s in self.sentinels), 20, 0.2)
        if not ready:
            self.stop()
            raise RuntimeError("the sentinels did not discover each other and the replica")

    def _node(self, node):
        self.nodes.append(node)
        return node

    def driver_url(self, db=None):
        hosts = ",".join("127.0.0.1:%d" % s.port for s in self.sentinels)
        url = "redis-sentinel://%s/%s" % (hosts, MASTER_NAME)
        return url if db is None else url + "/%d" % db

    def wait_for_master(self, port, timeout=30):
        """Waits until every sentinel names 127.0.0.1:`port` the master."""
        return wait_until(lambda: all(self._names(s, port) for s in self.sentinels), timeout, 0.1)

    @staticmethod
    def _names(sentinel, port):
        with contextlib.suppress(Exception):
            return sentinel.master()[1] == port
        return False

    def stop(self):
        for sentinel in self.sentinels:
            sentinel.stop()
        for node in self.nodes:
            node.stop()


def wait_role(node, role, timeout=20):
    return wait_until(lambda: _role(node) == role, timeout, 0.1)


def _role(node):
    with contextlib.suppress(Exception):
        client = RedisClient(node.port)
        try:
            return client.call("ROLE")[0]
        finally:
            client.close()
    return None
