"""What bench/measure.py reads from /proc: a proxy's process tree (the master and its workers),
its resident memory (now, settled, or the peak sampled in a thread) and its CPU time.
"""
import os
import statistics
import threading
import time


def stat_fields(pid):
    """The fields of /proc/<pid>/stat after "(comm)" (state is [0], ppid [1]), or None."""
    try:
        with open("/proc/%s/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may contain spaces and parentheses
    return stat[stat.rfind(b")") + 2:].split()


def process_tree(root):
    """root and all its descendants (pids)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = stat_fields(entry)
        if fields:
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def rss_of(pid):
    try:
        with open("/proc/%d/status" % pid, "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def cpu_times_tree(root):
    """(user, system) CPU time of a process and all its descendants, in seconds."""
    user = system = 0
    for pid in process_tree(root):
        fields = stat_fields(pid)
        if fields:
            user += int(fields[11])  # utime
            system += int(fields[12])  # stime
    return user / CLOCK_TICK, system / CLOCK_TICK


def cpu_seconds_tree(root):
    """User + system CPU time of a process and all its descendants, in seconds."""
    return sum(cpu_times_tree(root))


def rss_tree(root):
    """Resident memory of a process and all its descendants, in bytes."""
    return sum(rss_of(p) for p in process_tree(root))


def settled_rss(root, wait=1.0):
    time.sleep(wait)
    return statistics.median(rss_tree(root) for _ in range(3))


class PeakSampler:
    """Samples the RSS of a process tree every `interval` seconds in a thread; keeps the peak."""

    def __init__(self, root, interval=0.02):
        self.root, self.interval = root, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        pids, refreshed = process_tree(self.root), time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - refreshed > 0.5:     # workers may be respawned
                pids, refreshed = process_tree(self.root), time.monotonic()
            self.peak = max(self.peak, sum(rss_of(p) for p in pids))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False
