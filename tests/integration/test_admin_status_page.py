"""The admin listener's status page in a real browser (headless Chromium): after its script ran,
the DOM holds a row per worker and the chart, and the requests it shows move with the traffic
sent through the proxy."""

import os
import re
import shutil
import subprocess
import unittest

import harness
from admin_helpers import AdminTestCase

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_TIMEOUT = 40


class StatusPageTest(AdminTestCase):
    def rendered(self):
        """The page's DOM once its script had a few seconds of (virtual) time: fetches of
        status.json complete before virtual time moves on."""
        profile = os.path.join(self.workdir, "chromium-profile")
        result = subprocess.run(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--user-data-dir=" + profile, "--virtual-time-budget=3000", "--dump-dom",
             "http://127.0.0.1:%d/" % self.admin_port],
            capture_output=True, timeout=BROWSER_TIMEOUT)
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        return result.stdout.decode()

    def requests_shown(self, dom):
        match = re.search(r'<span id="requests-total">(\d+)</span>', dom)
        self.assertIsNotNone(match, "the script did not fill in the request count:\n" + dom[:3000])
        return int(match.group(1))

    def wait_counted(self, count):
        """A request is counted just after its answer's last byte left: wait for it (bounded)."""
        harness.wait_until(
            lambda: self.scrape().get('hipache_requests_total{code="200"}', 0) >= count, 5)

    def test_renders_workers_and_chart_and_follows_the_traffic(self):
        backend = self.http_backend()
        self.redis.rpush("frontend:page.test", "page", backend.url)
        self.start_admin_proxy(workers=2)
        for _ in range(3):
            self.assertEqual(self.request("GET", "/", host="page.test")[0], 200)
        self.wait_counted(3)

        first = self.rendered()
        self.assertEqual(len(re.findall(r'<tr class="worker-row">', first)), 2, first[:3000])
        self.assertRegex(first, r'<polyline id="rps-line"[^>]* points="[0-9.]+,[0-9.]+')
        self.assertEqual(self.requests_shown(first), 3)
        self.assertRegex(first, r"<tr><td>200</td><td>3</td></tr>")

        for _ in range(12):
            self.assertEqual(self.request("GET", "/", host="page.test")[0], 200)
        self.wait_counted(15)
        second = self.rendered()
        self.assertEqual(self.requests_shown(second), 15)
        self.assertRegex(second, r"<tr><td>200</td><td>15</td></tr>")


if __name__ == "__main__":
    unittest.main()
