"""What the admin listener's tests share: a proxy config with the admin section, scraping
/metrics into a dict, and requests to the admin port."""

import http.client
import json
import re

import harness

SAMPLE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (\S+)$')


def parse_metrics(text):
    """{'name{labels}': float} for every sample line; checks every family is declared first."""
    declared = set()
    samples = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            declared.add(line.split()[2])
            continue
        if line.startswith("#") or not line:
            continue
        match = SAMPLE.match(line)
        if not match:
            raise AssertionError("not a sample line: %r" % line)
        name = match.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in declared and family not in declared:
            raise AssertionError("sample before its # TYPE: %r" % line)
        samples[name + (match.group(2) or "")] = float(match.group(3))
    return samples


class AdminTestCase(harness.ProxyTestCase):
    def admin_config(self, workers=2, **admin):
        config = self.config(workers=workers)
        self.admin_port = harness.free_port()
        config["admin"] = {"bind": ["127.0.0.1"], "port": self.admin_port}
        config["admin"].update(admin)
        return config

    def start_admin_proxy(self, workers=2, **admin):
        proxy = self.start_proxy(self.admin_config(workers, **admin))
        harness.wait_for_port(self.admin_port)
        return proxy

    def admin(self, path, headers=None, method="GET"):
        """(status, headers lowercased, body bytes) of one admin request."""
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            return (response.status, {k.lower(): v for k, v in response.getheaders()},
                    response.read())
        finally:
            conn.close()

    def scrape(self, headers=None):
        status, head, body = self.admin("/metrics", headers)
        self.assertEqual(status, 200, body)
        self.assertTrue(head["content-type"].startswith("text/plain; version=0.0.4"), head)
        return parse_metrics(body.decode())

    def status_json(self):
        status, _, body = self.admin("/status.json")
        self.assertEqual(status, 200, body)
        return json.loads(body)
