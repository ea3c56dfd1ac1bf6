"""A scripted RESP server for the Redis replies a real server cannot be made to give on cue
(-LOADING, -READONLY to a client that believes it talks to the master). It answers what the proxy
sends (AUTH, SELECT, ROLE, CLIENT, SUBSCRIBE, PING, LRANGE, SMEMBERS, GET, INFO, MULTI...EXEC)
and plays a sentinel too (SENTINEL get-master-addr-by-name names itself). Not a test module.
"""
import socket
import threading

from harness import free_port


def bulk(text):
    data = text.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def array(*items):
    return b"*%d\r\n" % len(items) + b"".join(items)


class FakeRedis:
    def __init__(self):
        self.port = free_port()
        self.frontends = {}      # host -> [identifier, backend, ...]
        self.loading = False     # every data command answers -LOADING
        self.read_only = False   # every write answers -READONLY
        self.commands = []       # every command received, as lists of str
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def count(self, name):
        with self.lock:
            return sum(1 for c in self.commands if c and c[0].upper() == name)

    def stop(self):
        self.running = False
        self.listener.close()

    def _accept(self):
        while self.running:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        file = conn.makefile("rb")
        try:
            while self.running:
                command = self._read_command(file)
                if command is None:
                    return
                with self.lock:
                    self.commands.append(command)
                conn.sendall(self._answer(command))
        except OSError:
            pass
        finally:
            conn.close()

    @staticmethod
    def _read_command(file):
        line = file.readline()
        if not line.startswith(b"*"):
            return None
        args = []
        for _ in range(int(line[1:])):
            length = int(file.readline()[1:])
            args.append(file.read(length + 2)[:-2].decode())
        return args

    def _answer(self, command):
        name = command[0].upper()
        if name in ("AUTH", "SELECT"):
            return b"+OK\r\n"
        if name == "ROLE":
            return array(bulk("master"), b":0\r\n", b"*0\r\n")
        if name == "SENTINEL":
            return array(bulk("127.0.0.1"), bulk(str(self.port)))
        if name == "SUBSCRIBE":
            return array(bulk("subscribe"), bulk(command[1]), b":1\r\n")
        if name == "PING":
            return b"+PONG\r\n"
        if self.loading:
            return b"-LOADING Redis is loading the dataset in memory\r\n"
        if name == "CLIENT":
            return b":7\r\n" if command[1].upper() == "ID" else b"+OK\r\n"
        if name == "LRANGE":
            host = command[1].split("frontend:", 1)[1]
            return array(*(bulk(item) for item in self.frontends.get(host, [])))
        if name == "SMEMBERS":
            return b"*0\r\n"
        if name == "GET":
            return b"$-1\r\n"
        if name == "INFO":
            return bulk("# Replication\r\nrole:master\r\n")
        if name in ("SADD", "EXPIRE", "PUBLISH") and self.read_only:
            return b"-READONLY You can't write against a read only replica.\r\n"
        if name == "MULTI":
            return b"+OK\r\n"
        if name in ("SADD", "EXPIRE", "PUBLISH"):
            return b"+QUEUED\r\n"
        if name == "EXEC":
            if self.read_only:
                return b"-EXECABORT Transaction discarded because of previous errors.\r\n"
            return array(b":1\r\n", b":1\r\n", b":0\r\n")
        return b"-ERR unknown command\r\n"
