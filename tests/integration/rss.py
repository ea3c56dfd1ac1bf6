"""Resident memory of the proxy (the master and all its workers), read from /proc: one
reading, or the peak over a stretch of a test sampled in a thread.
"""
import contextlib
import os
import threading


def process_tree_rss_kb(root_pid):
    """VmRSS (kB) of root_pid plus all its descendants (the master and its workers)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        # A process that exits while it is read leaves a missing or empty stat file.
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    pids, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(parents.get(pid, []))
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
    return total


class RssSampler:
    """Samples the proxy's RSS in a thread; `peak_kb` is the highest value seen."""

    def __init__(self, pid, interval=0.02):
        self.pid = pid
        self.interval = interval
        self.peak_kb = process_tree_rss_kb(pid)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop_event.is_set():
            self.peak_kb = max(self.peak_kb, process_tree_rss_kb(self.pid))
            self.stop_event.wait(self.interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(5)
        self.peak_kb = max(self.peak_kb, process_tree_rss_kb(self.pid))
