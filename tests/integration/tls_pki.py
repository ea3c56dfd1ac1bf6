"""The certificates of the TLS tests (test_tls_*.py), made with the `openssl` command line into
a temp dir once per test module:

    root CA ──> intermediate CA ──> secure.test       (the configured default certificate;
                                │                      its key also exists passphrase-protected)
                                ├─> exact.test        (certDir file: cert + intermediate + key)
                                ├─> *.wild.test       (certDir file: cert + intermediate + key)
                                └─> new.test          (dropped into certDir before a SIGHUP)
    root CA ──> localhost, backend.test, IP 127.0.0.1  (https backends, trusted via SSL_CERT_FILE)
    self-signed 127.0.0.1                              (an https backend nobody can verify)

Clients trust only the root CA, so a verified handshake proves the intermediate was sent.
A test module imports tearDownModule from here, which removes them when its tests are done.
"""
import os
import shutil
import subprocess
import tempfile

PASSPHRASE = "correct horse battery staple"


# --------------------------------------------------------------------------- certificates

class Pki:
    """Every key and certificate the tests use, generated with the openssl CLI."""

    REQ_CONFIG = "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n"
    EXTENSIONS = """
[root]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[intermediate]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

    def __init__(self, directory):
        self.dir = directory
        self._write("req.cnf", self.REQ_CONFIG)
        self._write("ext.cnf", self.EXTENSIONS)
        self.root_key = self._key("root.key")
        self.root = self._self_signed("root.pem", self.root_key, "/CN=Hipache Test Root CA", "root")
        self.inter_key = self._key("inter.key")
        self.inter = self._signed("inter.pem", self.inter_key, "/CN=Hipache Test Intermediate CA",
                                  self.root, self.root_key, section="intermediate")
        # secure.test: the default certificate. The encrypted key is the original (genpkey
        # -aes256); the plain one is its decrypted copy, so both match the certificate.
        self.leaf_key_encrypted = self._key("secure.enc.key", passphrase=PASSPHRASE)
        self.leaf_key = self.path("secure.key")
        self._openssl("pkey", "-in", self.leaf_key_encrypted, "-passin", "pass:" + PASSPHRASE,
                      "-out", self.leaf_key)
        self.leaf = self._leaf("secure.pem", self.leaf_key, "secure.test", ["DNS:secure.test"])
        self.leaf_chain = self._concat("secure.chain.pem", self.leaf, self.inter)
        # SNI certificates: one PEM file each holding the chain and the private key.
        self.exact = self._sni_file("exact.test", ["DNS:exact.test"])
        self.wild = self._sni_file("*.wild.test", ["DNS:*.wild.test"], name="wild")
        self.new = self._sni_file("new.test", ["DNS:new.test"])
        # https backends
        self.localhost_key = self._key("localhost.key")
        self.localhost = self._leaf("localhost.pem", self.localhost_key, "localhost",
                                    ["DNS:localhost"], issuer=(self.root, self.root_key))
        self.backend_name_key = self._key("backend-name.key")
        self.backend_name = self._leaf("backend-name.pem", self.backend_name_key, "backend.test",
                                       ["DNS:backend.test"], issuer=(self.root, self.root_key))
        self.ip_key = self._key("ip.key")
        self.ip = self._leaf("ip.pem", self.ip_key, "127.0.0.1", ["IP:127.0.0.1"],
                             issuer=(self.root, self.root_key))
        self.self_signed_key = self._key("self-signed.key")
        self._write("self-signed.cnf",
                    "[ext]\nbasicConstraints = critical,CA:FALSE\n"
                    "subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n")
        self.self_signed = self._self_signed("self-signed.pem", self.self_signed_key,
                                             "/CN=127.0.0.1", "ext",
                                             extfile=self.path("self-signed.cnf"))

    def path(self, name):
        return os.path.join(self.dir, name)

    def _write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def _concat(self, name, *files):
        data = b""
        for file in files:
            with open(file, "rb") as f:
                data += f.read()
        with open(self.path(name), "wb") as f:
            f.write(data)
        return self.path(name)

    def _openssl(self, *args):
        result = subprocess.run(["openssl", *args], cwd=self.dir, capture_output=True, timeout=30)
        if result.returncode != 0:
            raise RuntimeError("openssl %s failed: %s" % (" ".join(args),
                                                          result.stderr.decode(errors="replace")))

    def _key(self, name, passphrase=None):
        args = ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", self.path(name)]
        if passphrase is not None:
            args += ["-aes256", "-pass", "pass:" + passphrase]
        self._openssl(*args)
        return self.path(name)

    def _csr(self, key, subject):
        csr = key + ".csr"
        self._openssl("req", "-new", "-config", self.path("req.cnf"), "-key", key,
                      "-subj", subject, "-out", csr)
        return csr

    def _self_signed(self, name, key, subject, section, extfile=None):
        self._openssl("x509", "-req", "-in", self._csr(key, subject), "-signkey", key,
                      "-days", "3", "-sha256", "-out", self.path(name),
                      "-extfile", extfile or self.path("ext.cnf"), "-extensions", section)
        return self.path(name)

    def _signed(self, name, key, subject, ca, ca_key, section, extfile=None):
        self._openssl("x509", "-req", "-in", self._csr(key, subject), "-CA", ca, "-CAkey", ca_key,
                      "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
                      "-days", "3", "-sha256", "-out", self.path(name),
                      "-extfile", extfile or self.path("ext.cnf"), "-extensions", section)
        return self.path(name)

    def _leaf(self, name, key, common_name, alt_names, issuer=None):
        extfile = self._write(
            name + ".cnf",
            "[leaf]\nbasicConstraints = critical,CA:FALSE\n"
            "keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n"
            "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n"
            "subjectAltName = %s\n" % ",".join(alt_names))
        ca, ca_key = issuer or (self.inter, self.inter_key)
        return self._signed(name, key, "/CN=" + common_name, ca, ca_key, "leaf", extfile)

    def _sni_file(self, common_name, alt_names, name=None):
        name = name or common_name
        key = self._key(name + ".key")
        cert = self._leaf(name + ".crt", key, common_name, alt_names)
        return self._concat(name + ".pem", cert, self.inter, key)


# --------------------------------------------------------------------------- one set per module

_PKI = {}


def shared_pki():
    """One set of certificates for the whole module (made on first use)."""
    if "pki" not in _PKI:
        _PKI["dir"] = tempfile.mkdtemp(prefix="hipache-pki-")
        _PKI["pki"] = Pki(_PKI["dir"])
    return _PKI["pki"]


def tearDownModule():
    if "dir" in _PKI:
        shutil.rmtree(_PKI["dir"], ignore_errors=True)
    # Forgotten too, so that another module run in the same process makes a new set.
    _PKI.clear()
