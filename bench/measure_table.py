"""The comparison table of bench/measure.py (markdown): one row per metric, one column per
proxy, then hipache's ratio to each other proxy; errors and notes listed below it.
"""
import json
import os
import time

MiB = 1 << 20
# key, label, formatter, better ("+" higher is better, "-" lower is better, "" neither)
ROWS = [
    ("small_rps", "Small responses: throughput (req/s)", lambda v: "{:,.0f}".format(v), "+"),
    ("small_p99", "Small responses: p99 latency (ms)", lambda v: "%.2f" % v, "-"),
    ("small_cpu", "Small responses: proxy CPU per request (µs)", lambda v: "%.1f" % v, "-"),
    ("vhosts_rps", "{vhosts} vhosts at random: throughput (req/s)",
     lambda v: "{:,.0f}".format(v), "+"),
    ("vhosts_p99", "{vhosts} vhosts at random: p99 latency (ms)", lambda v: "%.2f" % v, "-"),
    ("vhosts_cpu", "{vhosts} vhosts at random: proxy CPU per request (µs)",
     lambda v: "%.1f" % v, "-"),
    ("h2tls_m1_rps", "h2 over TLS, {h2conns} conns x 1 stream: throughput (req/s)",
     lambda v: "{:,.0f}".format(v), "+"),
    ("h2tls_m1_cpu", "h2 over TLS, {h2conns} conns x 1 stream: proxy CPU per request (µs)",
     lambda v: "%.1f" % v, "-"),
    ("h2tls_mx_rps", "h2 over TLS, {h2conns} conns x {h2streams} streams: throughput (req/s)",
     lambda v: "{:,.0f}".format(v), "+"),
    ("h2tls_mx_cpu", "h2 over TLS, {h2conns} conns x {h2streams} streams: proxy CPU per request "
     "(µs)", lambda v: "%.1f" % v, "-"),
    ("h2c_m1_rps", "h2c (prior knowledge), {h2conns} conns x 1 stream: throughput (req/s)",
     lambda v: "{:,.0f}".format(v), "+"),
    ("h2c_m1_cpu", "h2c (prior knowledge), {h2conns} conns x 1 stream: proxy CPU per request "
     "(µs)", lambda v: "%.1f" % v, "-"),
    ("h2c_mx_rps", "h2c (prior knowledge), {h2conns} conns x {h2streams} streams: throughput "
     "(req/s)", lambda v: "{:,.0f}".format(v), "+"),
    ("h2c_mx_cpu", "h2c (prior knowledge), {h2conns} conns x {h2streams} streams: proxy CPU per "
     "request (µs)", lambda v: "%.1f" % v, "-"),
    ("idle_rss_per_conn", "{idle} idle keep-alive conns: RSS per connection (bytes)",
     lambda v: "{:,.0f}".format(v), "-"),
    ("idle_rss_after", "{idle} idle keep-alive conns: total RSS (MiB)",
     lambda v: "%.1f" % (v / MiB), "-"),
    ("upload_rss_growth", "{transfer} upload: peak RSS growth (KiB)",
     lambda v: "{:,.0f}".format(v / 1024), "-"),
    ("upload_mbps", "{transfer} upload: throughput (MB/s)", lambda v: "{:,.0f}".format(v), "+"),
    ("download_rss_growth", "{transfer} download: peak RSS growth (KiB)",
     lambda v: "{:,.0f}".format(v / 1024), "-"),
    ("download_mbps", "{transfer} download: throughput (MB/s)", lambda v: "{:,.0f}".format(v),
     "+"),
    ("ws_msgs", "{ws} WebSocket echo tunnels: messages/s", lambda v: "{:,.0f}".format(v), "+"),
    ("ws_rss_per_tunnel", "{ws} WebSocket echo tunnels: RSS per tunnel (bytes)",
     lambda v: "{:,.0f}".format(v), "-"),
    ("route_median", "Redis write -> first routed request: median (ms)",
     lambda v: "%.3f" % v, "-"),
    ("route_p90", "Redis write -> first routed request: p90 (ms)", lambda v: "%.3f" % v, "-"),
    ("route_miss_median", "Same, host requested just before the write: median (ms)",
     lambda v: "%.3f" % v, "-"),
    ("route_miss_p90", "Same, host requested just before the write: p90 (ms)",
     lambda v: "%.3f" % v, "-"),
    ("rss_start", "Proxy RSS just started, all processes (MiB)",
     lambda v: "%.1f" % (v / MiB), "-"),
]


def cell(value, fmt):
    if value is None:
        return "-"
    if isinstance(value, str):
        return "n/a" if value == "n/a" else "ERROR"
    return fmt(value)


def ratio(a, b):
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b <= 0:
        return "n/a"
    return "%.2fx" % (a / b)


def render(res):
    s = res["settings"]
    size = s["transfer_bytes"]
    transfer = ("%g GB" % (size / (1 << 30))) if size >= (1 << 30) else "%d MB" % (size >> 20)
    names = res["proxies"]
    ours, others = names[0], names[1:]
    header = ["Metric"] + names + ["%s/%s" % (ours, o) for o in others]
    rows = []
    for key, label, fmt, better in ROWS:
        values = res["values"].get(key, {})
        label = label.format(vhosts="{:,}".format(s["vhosts"]), idle="{:,}".format(s["idle_conns"]),
                             ws="{:,}".format(s["ws_tunnels"]), transfer=transfer,
                             h2conns=s.get("h2_connections", 32),
                             h2streams=s.get("h2_streams", 16))
        label += {"+": " ↑", "-": " ↓", "": ""}[better]
        row = [label] + [cell(values.get(n), fmt) for n in names]
        row += [ratio(values.get(ours), values.get(o)) for o in others]
        rows.append(row)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

    def line(r):
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(r, widths))) + " |"
    sep = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    table = [line(header), sep] + [line(r) for r in rows]

    out = ["# hipache benchmark: %s" % time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime()),
           "",
           "%s round(s) of %gs per throughput figure (median), wrk 1 thread / %d connections, "
           "h2load 1 thread, %s mode, workers %s. ↑ higher is better, ↓ lower is better; ratios "
           "are %s divided by the other proxy (for ↓ rows a ratio below 1 favours %s)."
           % (s["rounds"], s["seconds"], s["wrk_connections"],
              "quick" if s["quick"] else "full",
              "bound one per CPU" if os.environ.get("BENCH_CPU_AFFINITY", "1") == "1"
              else "floating (BENCH_CPU_AFFINITY=0)", ours, ours),
           "", *table, ""]
    if res.get("versions"):
        out.append("Versions: " + "; ".join(res["versions"].values()))
        out.append("")
    if res.get("tls_ciphers"):
        out.append("TLS cipher negotiated by h2load: " + "; ".join(
            "%s %s" % kv for kv in res["tls_ciphers"].items()))
        out.append("")
    errors = []
    for key, _, _, _ in ROWS:
        for n, v in res["values"].get(key, {}).items():
            if isinstance(v, str) and v != "n/a":
                errors.append("%s, %s: %s" % (n, key, v))
    if res["notes"] or errors:
        out.append("Notes:")
        out.extend("- " + x for x in res["notes"] + errors)
        out.append("")
    if res.get("rounds"):
        out.append("Per-round figures (req/s, p99 ms, proxy CPU µs per request; h2 rows: req/s, "
                   "CPU µs per request; messages/s):")
        for metric, per in res["rounds"].items():
            for n, rounds in per.items():
                out.append("- %s %s: %s" % (metric, n, json.dumps(rounds)))
        out.append("")
    return "\n".join(out)
