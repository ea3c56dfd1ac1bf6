#include "metrics/exposition.hpp"

#include <fmt/format.h>

#include <iterator>

namespace hipache::metrics {

namespace {

std::uint64_t counter(const Snapshot& s, Counter c) {
  return s.counters[static_cast<std::size_t>(c)];
}
std::int64_t gauge(const Snapshot& s, Gauge g) {
  return s.gauges[static_cast<std::size_t>(g)];
}
std::uint64_t master(const Snapshot& s, MasterCounter c) {
  return s.master[static_cast<std::size_t>(c)];
}

class Writer {
 public:
  void header(std::string_view name, std::string_view type, std::string_view help) {
    fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name, help, name,
                   type);
  }
  template <class Number>
  void sample(std::string_view name, std::string_view labels, Number value) {
    if (labels.empty()) {
      fmt::format_to(std::back_inserter(out_), "{} {}\n", name, value);
    } else {
      fmt::format_to(std::back_inserter(out_), "{}{{{}}} {}\n", name, labels, value);
    }
  }
  template <class Number>
  void single(std::string_view name, std::string_view type, std::string_view help, Number value) {
    header(name, type, help);
    sample(name, "", value);
  }
  void histogram(std::string_view name, std::string_view help,
                 const std::array<std::uint64_t, kBuckets>& buckets, std::uint64_t sum_us) {
    header(name, "histogram", help);
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      cumulative += buckets[i];
      const std::string le =
          i < kDurationBounds.size() ? fmt::format("{}", kDurationBounds[i]) : "+Inf";
      fmt::format_to(std::back_inserter(out_), "{}_bucket{{le=\"{}\"}} {}\n", name, le, cumulative);
    }
    fmt::format_to(std::back_inserter(out_), "{}_sum {}.{:06}\n{}_count {}\n", name,
                   sum_us / 1000000, sum_us % 1000000, name, cumulative);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string format_prometheus(const Snapshot& s) {
  Writer w;
  w.header("hipache_requests_total", "counter", "Requests answered, by the HTTP status sent.");
  for (std::size_t i = 0; i < s.requests.size(); ++i) {
    if (s.requests[i] == 0) continue;
    const auto code = i == 0 ? std::string("other") : std::to_string(i - 1 + kFirstCode);
    w.sample("hipache_requests_total", "code=\"" + code + "\"", s.requests[i]);
  }
  w.histogram("hipache_request_duration_seconds",
              "Time from the request header to the last byte of the answer.", s.request_duration,
              s.request_duration_sum_us);
  w.histogram("hipache_backend_duration_seconds",
              "Time spent on the backend (connect to the end of its answer).", s.backend_duration,
              s.backend_duration_sum_us);
  w.single("hipache_retries_total", "counter", "Attempts repeated on another backend.",
           counter(s, Counter::retries));
  w.single("hipache_dead_marks_total", "counter", "Backends published dead.",
           counter(s, Counter::dead_marks));

  w.single("hipache_connections_accepted_total", "counter", "Client connections accepted.",
           counter(s, Counter::connections_accepted));
  w.header("hipache_client_connections", "gauge", "Open client connections, by state.");
  w.sample("hipache_client_connections", "state=\"active\"",
           gauge(s, Gauge::connections_open) - gauge(s, Gauge::connections_parked));
  w.sample("hipache_client_connections", "state=\"parked\"", gauge(s, Gauge::connections_parked));
  w.single("hipache_websocket_tunnels", "gauge", "Open WebSocket (upgrade) tunnels.",
           gauge(s, Gauge::tunnels_open));
  w.single("hipache_websocket_tunnels_total", "counter", "WebSocket (upgrade) tunnels opened.",
           counter(s, Counter::websocket_tunnels));

  w.header("hipache_upstream_connections", "gauge", "Backend connections, by state.");
  w.sample("hipache_upstream_connections", "state=\"idle\"", gauge(s, Gauge::pool_idle));
  w.sample("hipache_upstream_connections", "state=\"busy\"", gauge(s, Gauge::pool_busy));
  w.single("hipache_upstream_waiting_requests", "gauge",
           "Requests waiting for a backend connection (server.maxSockets).",
           gauge(s, Gauge::pool_waiting));

  w.single("hipache_route_cache_hits_total", "counter", "Route lookups answered by the cache.",
           counter(s, Counter::route_cache_hits));
  w.single("hipache_route_cache_misses_total", "counter", "Route lookups that read Redis.",
           counter(s, Counter::route_cache_misses));
  w.single("hipache_route_cache_invalidations_total", "counter",
           "Invalidations received from Redis (one host or all).",
           counter(s, Counter::route_cache_invalidations));
  w.single("hipache_route_cache_entries", "gauge", "Hosts in the route caches.",
           gauge(s, Gauge::route_cache_entries));
  w.single("hipache_route_cache_bytes", "gauge", "Estimated size of the route caches.",
           gauge(s, Gauge::route_cache_bytes));

  const auto workers = static_cast<std::int64_t>(s.workers.size());
  w.single("hipache_redis_up", "gauge", "1 when every worker's Redis link is up.",
           workers > 0 && gauge(s, Gauge::redis_up) == workers ? 1 : 0);
  w.single("hipache_redis_connected_workers", "gauge", "Workers whose Redis link is up.",
           gauge(s, Gauge::redis_up));
  w.single("hipache_redis_reconnects_total", "counter", "Redis connections opened again.",
           counter(s, Counter::redis_reconnects));

  w.single("hipache_tls_handshakes_total", "counter", "Client TLS handshakes completed.",
           counter(s, Counter::tls_handshakes));
  w.single("hipache_tls_handshake_failures_total", "counter", "Client TLS handshakes failed.",
           counter(s, Counter::tls_handshake_failures));

  w.single("hipache_workers", "gauge", "Worker processes running (draining ones included).",
           workers);
  w.header("hipache_worker_resident_memory_bytes", "gauge", "Resident memory of each worker.");
  for (const auto& worker : s.workers) {
    w.sample("hipache_worker_resident_memory_bytes", fmt::format("pid=\"{}\"", worker.pid),
             worker.gauges[static_cast<std::size_t>(Gauge::rss_bytes)]);
  }
  w.single("hipache_worker_restarts_total", "counter", "Workers that died and were replaced.",
           master(s, MasterCounter::worker_restarts));
  w.single("hipache_worker_recycles_total", "counter",
           "Workers replaced for using more than server.memoryLimit.",
           master(s, MasterCounter::worker_recycles));
  w.single("hipache_reloads_total", "counter", "Configuration reloads (SIGHUP) applied.",
           master(s, MasterCounter::reloads));

  if (!s.frontends.empty()) {
    w.header("hipache_frontend_requests_total", "counter",
             "Requests of the busiest frontends (admin.frontendMetrics).");
    for (const auto& frontend : s.frontends) {
      w.sample("hipache_frontend_requests_total",
               "frontend=\"" + escape_label_value(frontend.name) + "\"", frontend.requests);
    }
    w.header("hipache_frontend_server_errors_total", "counter",
             "5xx answers of the busiest frontends.");
    for (const auto& frontend : s.frontends) {
      w.sample("hipache_frontend_server_errors_total",
               "frontend=\"" + escape_label_value(frontend.name) + "\"", frontend.server_errors);
    }
  }
  return w.take();
}

}  // namespace hipache::metrics
