"""The worker's heap after a burst (src/process/heap.cpp): the memory a burst of connections
used goes back to the kernel within seconds, whichever allocator the binary runs on (jemalloc in
the release build; the master's start-up line names it)."""
import re
import socket
import time
import unittest

import harness
from harness import wait_until
from process_helpers import children
from rss import process_tree_rss_kb

MB = 1024


class HeapAfterBurstTest(harness.ProxyTestCase):
    def test_rss_drops_back_after_a_burst_of_connections(self):
        self.start_proxy(tcpTimeout=30)
        match = re.search(r"heap: (\S+)", self.proxy.log())
        self.assertIsNotNone(match, self.proxy.log())
        allocator = match.group(1)
        self.assertIn(allocator, ("jemalloc", "glibc", "AddressSanitizer"))
        if allocator == "AddressSanitizer":
            # The sanitizer's allocator (with its quarantine) decides when pages go back, not
            # the worker: the drop below is the release build's.
            return
        (worker,) = children(self.proxy.process.pid)

        def burst():
            # Each connection holds an unfinished 6 KB request header: its session, parser and
            # read buffer stay allocated until the client goes away.
            clients = []
            for _ in range(800):
                client = socket.create_connection(("127.0.0.1", self.proxy.port), timeout=5)
                client.sendall(b"GET / HTTP/1.1\r\nHost: burst.test\r\nX-Pad: "
                               + b"a" * 6000 + b"\r\n")
                clients.append(client)
            time.sleep(0.5)
            peak = process_tree_rss_kb(worker)
            for client in clients:
                client.close()
            return peak

        burst()  # the first one also fills what the allocator keeps for good
        time.sleep(1.5)
        before = process_tree_rss_kb(worker)
        peak = burst()
        self.assertGreater(peak - before, 10 * MB, "the burst used too little memory to tell")
        # Once a second the worker hands free pages back: well within 3 s the RSS is back near
        # where it was (without that, jemalloc keeps them 10 s, glibc until reused).
        back = wait_until(lambda: process_tree_rss_kb(worker) - before < 3 * MB, 3)
        self.assertTrue(back, "RSS %d KB before the burst, %d KB at its peak, %d KB 3 s after"
                        % (before, peak, process_tree_rss_kb(worker)))


if __name__ == "__main__":
    unittest.main()
