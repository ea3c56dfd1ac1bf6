"""HTTPS through the real binary (SPEC section 2, https keys), the settings: keys behind a
passphrase, one-line configuration errors that bind nothing, ciphers and honorCipherOrder
(Hipache's default cipher string replaced with a warning), and protocol versions
(secureProtocol).

Certificates: tls_pki.py. Standard library only (ssl, socket, subprocess); loopback only.

Run: HIPACHE_BINARY=/work/main/build/hipache python3 -m unittest -v test_tls_settings
"""
import json
import os
import socket
import ssl
import subprocess
import unittest
import warnings

import harness
from tls_helpers import TlsTestCase, names_of
from tls_pki import PASSPHRASE, tearDownModule  # noqa: F401 (unittest runs tearDownModule: the certificates go)

HIPACHE_DEFAULT_CIPHERS = " ".join([
    "DH+ECDSA+AESGCM EECDH+aRSA+AESGCM EECDH+ECDSA+SHA384",
    "EECDH+ ECDSA+SHA256 EECDH+a RSA+SHA384 EECDH+aRSA+SHA256",
    "EECDH+aRSA+RC4 EECDH EDH+aRSA RC4 !aNULL !eNULL !LOW !3DES",
    "!MD5 !EXP !PSK !SRP !DSS !RC4",
])


def port_is_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def run_binary(config, workdir, timeout=15):
    """Runs the binary on `config` without a terminal (so nothing can prompt for a passphrase)."""
    path = os.path.join(workdir, "config-direct.json")
    with open(path, "w") as f:
        json.dump(config, f)
    try:
        return subprocess.run([harness.BINARY, "-c", path], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout, start_new_session=True)
    except subprocess.TimeoutExpired as e:
        raise AssertionError("the binary did not exit within %ds (waiting for a passphrase "
                             "prompt, or serving?); stderr: %r" % (timeout, e.stderr)) from e


class KeyAndCipherTest(TlsTestCase):
    def test_passphrase_protected_key(self):
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config(key=self.pki.leaf_key_encrypted,
                                             passphrase=PASSPHRASE))
        status, _, _, info = self.https_get()
        self.assertEqual(status, 200)
        self.assertEqual(names_of(info["cert"])[0], "secure.test")

    def assert_one_line_config_error(self, result, key):
        stderr = result.stderr.decode(errors="replace")
        self.assertNotEqual(result.returncode, 0, stderr)
        lines = [line for line in stderr.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, "expected one line, got:\n" + stderr)
        self.assertIn(key, lines[0])
        return lines[0]

    def test_wrong_passphrase_is_a_config_error(self):
        config = self.tls_config(key=self.pki.leaf_key_encrypted, passphrase="not the passphrase")
        result = run_binary(config, self.workdir)
        line = self.assert_one_line_config_error(result, "https.key")
        self.assertNotIn("not the passphrase", line)
        # nothing was bound (and nothing is left listening)
        self.assertTrue(port_is_free(config["http"]["port"]))
        self.assertTrue(port_is_free(self.https_port))

    def test_encrypted_key_without_passphrase_is_a_config_error(self):
        config = self.tls_config(key=self.pki.leaf_key_encrypted)
        result = run_binary(config, self.workdir)
        self.assert_one_line_config_error(result, "https.key")

    def test_key_not_matching_the_certificate_is_a_config_error(self):
        config = self.tls_config(key=self.pki.localhost_key)  # cert is secure.test's
        result = run_binary(config, self.workdir)
        line = self.assert_one_line_config_error(result, "https.key")
        self.assertTrue("does not match" in line or "mismatch" in line,
                        "the line does not say the key and certificate differ: " + line)

    def test_unknown_cipher_string_is_a_config_error(self):
        config = self.tls_config(ciphers="NOT-A-CIPHER")
        result = run_binary(config, self.workdir)
        self.assert_one_line_config_error(result, "https.ciphers")
        self.assertTrue(port_is_free(config["http"]["port"]))

    def test_hipache_default_cipher_string_is_replaced_with_a_warning(self):
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config(ciphers=HIPACHE_DEFAULT_CIPHERS))
        tls12 = self.client_context(maximum=ssl.TLSVersion.TLSv1_2)
        status, _, _, info = self.https_get(context=tls12)
        self.assertEqual(status, 200)
        self.assertIn("ECDHE-ECDSA", info["cipher"])
        self.assertTrue(harness.wait_until(lambda: "https.ciphers" in self.proxy.log(), 3),
                        "no warning naming https.ciphers:\n" + self.proxy.log())

    def test_ciphers_and_honor_cipher_order(self):
        server_order = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config(ciphers=server_order))
        client = self.client_context(maximum=ssl.TLSVersion.TLSv1_2)
        client.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256")
        # honorCipherOrder defaults to true: the server's first choice wins
        self.assertEqual(self.https_get(context=client)[3]["cipher"], "ECDHE-ECDSA-AES128-GCM-SHA256")
        # a cipher outside the configured list is refused
        other = self.client_context(maximum=ssl.TLSVersion.TLSv1_2)
        other.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305")
        self.assertIsNotNone(self.handshake_error(other))

    def test_honor_cipher_order_false_follows_the_client(self):
        server_order = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config(ciphers=server_order, honorCipherOrder=False))
        client = self.client_context(maximum=ssl.TLSVersion.TLSv1_2)
        client.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256")
        self.assertEqual(self.https_get(context=client)[3]["cipher"], "ECDHE-ECDSA-AES256-GCM-SHA384")


class ProtocolVersionTest(TlsTestCase):
    def old_protocol_context(self, version):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1/TLSv1_1
            context = self.client_context(verify=False, minimum=version, maximum=version)
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this OpenSSL offer TLS 1.0/1.1 at all
        return context

    def test_tls10_and_tls11_refused_by_default(self):
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config())
        for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            with self.subTest(version=version.name):
                try:
                    context = self.old_protocol_context(version)
                except (ValueError, ssl.SSLError) as error:
                    self.skipTest("this Python/OpenSSL cannot offer %s: %s" % (version.name, error))
                error = self.handshake_error(context)
                if isinstance(error, ssl.SSLError) and "NO_PROTOCOLS_AVAILABLE" in str(error):
                    self.skipTest("the local OpenSSL refuses to offer %s" % version.name)
                self.assertIsNotNone(error, "%s handshake accepted" % version.name)

    def test_tls11_when_asked_for_explicitly(self):
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config(secureProtocol="TLSv1_1_method"))
        context = self.old_protocol_context(ssl.TLSVersion.TLSv1_1)
        try:
            status, _, _, info = self.https_get(context=context)
        except ssl.SSLError as error:
            if "NO_PROTOCOLS_AVAILABLE" in str(error):
                self.skipTest("the local OpenSSL refuses to offer TLSv1.1")
            raise
        self.assertEqual(status, 200)
        self.assertEqual(info["version"], "TLSv1.1")
        # and nothing newer: TLSv1_1_method is exactly TLS 1.1
        self.assertIsNotNone(self.handshake_error(
            self.client_context(minimum=ssl.TLSVersion.TLSv1_2)))

    def test_tls12_and_tls13_accepted_by_default(self):
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config())
        for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                              (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
            with self.subTest(version=name):
                context = self.client_context(minimum=version, maximum=version)
                status, _, _, info = self.https_get(context=context)
                self.assertEqual(status, 200)
                self.assertEqual(info["version"], name)
        # an unrestricted client gets the newest
        self.assertEqual(self.https_get()[3]["version"], "TLSv1.3")

    def test_secure_protocol_tls12_method_refuses_tls13(self):
        self.echo_frontend()
        self.start_tls_proxy(self.tls_config(secureProtocol="TLSv1_2_method",
                                             certDir=self.cert_dir(self.pki.exact)))
        tls13 = self.client_context(minimum=ssl.TLSVersion.TLSv1_3)
        self.assertIsNotNone(self.handshake_error(tls13))
        status, _, _, info = self.https_get()
        self.assertEqual(status, 200)
        self.assertEqual(info["version"], "TLSv1.2")
        # a certificate chosen by SNI does not bring other protocol settings along
        self.assertIsNotNone(self.handshake_error(tls13, "exact.test"))
        status, _, _, info = self.https_get(server_hostname="exact.test")
        self.assertEqual(status, 200)
        self.assertEqual((info["version"], names_of(info["cert"])[0]), ("TLSv1.2", "exact.test"))


if __name__ == "__main__":
    unittest.main()
