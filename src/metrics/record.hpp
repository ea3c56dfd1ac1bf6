// What the data path calls to count: one line at each place an event happens. Every call writes
// to this worker's own slot of the shared table (metrics/table.hpp) with plain relaxed stores;
// before a worker attaches (and in the master, tests and tools) the calls do nothing. Built with
// -DHIPACHE_METRICS=OFF, they compile to nothing (bench/: the cost of counting).
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

#include "metrics/table.hpp"

namespace hipache::metrics {

namespace detail {
inline WorkerSlot* current = nullptr;  // this worker's slot
inline bool per_frontend = false;      // admin.frontendMetrics > 0
}  // namespace detail

// Worker: from now on the calls below count in `slot` (null: they do nothing).
inline void attach(WorkerSlot* slot, bool per_frontend) {
  detail::current = slot;
  detail::per_frontend = per_frontend;
}

#ifdef HIPACHE_NO_METRICS
inline constexpr bool kEnabled = false;
#else
inline constexpr bool kEnabled = true;
#endif

inline void add(Counter counter, std::uint64_t n = 1) {
  if constexpr (kEnabled) {
    if (detail::current != nullptr) {
      detail::current->counters[static_cast<std::size_t>(counter)].add(n);
    }
  }
}

inline void set(Gauge gauge, std::int64_t value) {
  if constexpr (kEnabled) {
    if (detail::current != nullptr) {
      detail::current->gauges[static_cast<std::size_t>(gauge)].store(value,
                                                                     std::memory_order_relaxed);
    }
  }
}

// A gauge this worker keeps by events (tunnels open): +1 / -1.
inline void adjust(Gauge gauge, std::int64_t delta) {
  if constexpr (kEnabled) {
    if (detail::current != nullptr) {
      auto& cell = detail::current->gauges[static_cast<std::size_t>(gauge)];
      cell.store(cell.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
    }
  }
}

// The end of one request: the status sent, the whole exchange and the backend's part of it.
// `frontend`: the Host it was routed by (empty when it was not).
inline void request_done(unsigned status, std::chrono::steady_clock::duration total,
                         std::chrono::steady_clock::duration backend, std::string_view frontend) {
  if constexpr (kEnabled) {
    if (detail::current == nullptr) return;
    using std::chrono::microseconds;
    const auto micros = [](auto d) {
      const auto count = std::chrono::duration_cast<microseconds>(d).count();
      return static_cast<std::uint64_t>(count > 0 ? count : 0);
    };
    detail::current->record_request(status, micros(total), micros(backend));
    if (detail::per_frontend && !frontend.empty()) {
      detail::current->record_frontend(frontend, status >= 500);
    }
  }
}

}  // namespace hipache::metrics
