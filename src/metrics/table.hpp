// The service's metrics, in memory the master shares with every worker (docs/operations.md,
// "Metrics and status page").
//
// The master creates the table (a memfd, mapped MAP_SHARED) before the first fork, so every
// worker sees it; an in-place upgrade passes the memfd to the new image like the ticket keys,
// so the counters and the slots of the previous image's workers carry over. Each worker owns one
// slot and is its only writer (plain relaxed loads and stores: no lock, no read-modify-write).
// When a worker is gone, the master folds its counters into the "retired" slot (its gauges go)
// and frees the slot: counters never go backwards when workers are replaced. A fold is bracketed
// by a sequence number so that a reader never counts a worker twice or not at all.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hipache::metrics {

// Upper bounds (seconds) of the duration histograms' buckets; +Inf follows.
inline constexpr std::array<double, 11> kDurationBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                           0.5,   1,    2.5,   5,    10};
inline constexpr std::size_t kBuckets = kDurationBounds.size() + 1;

// Status codes 100..599 each have a counter; anything else counts as code 0.
inline constexpr unsigned kFirstCode = 100;
inline constexpr unsigned kCodes = 500;

// Frontends a worker keeps counts for (admin.frontendMetrics at most this many are shown).
inline constexpr std::size_t kFrontendEntries = 64;
inline constexpr std::size_t kFrontendNameBytes = 64;  // longer names are cut

enum class Counter : std::size_t {
  retries,
  dead_marks,
  route_cache_hits,
  route_cache_misses,
  route_cache_invalidations,
  redis_reconnects,
  tls_handshakes,
  tls_handshake_failures,
  connections_accepted,
  websocket_tunnels,
  count
};

enum class Gauge : std::size_t {
  rss_bytes,
  connections_open,
  connections_parked,
  tunnels_open,
  pool_idle,
  pool_busy,
  pool_waiting,
  route_cache_entries,
  route_cache_bytes,
  redis_up,
  count
};

// Master-only counters.
enum class MasterCounter : std::size_t { worker_restarts, worker_recycles, reloads, count };

// A counter with one writer: load and store, no locked instruction.
struct Cell {
  std::atomic<std::uint64_t> value{0};
  void add(std::uint64_t n) {
    value.store(value.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::uint64_t get() const { return value.load(std::memory_order_relaxed); }
};

struct Histogram {
  std::array<Cell, kBuckets> buckets;  // not cumulative: one bucket per observation
  Cell sum_us;
  void observe(std::uint64_t micros);
};

// One frontend's counts in one worker. `seq` is odd while its writer replaces the name.
struct FrontendEntry {
  std::atomic<std::uint32_t> seq{0};
  std::atomic<std::uint64_t> hash{0};                                     // 0 = free
  std::array<std::atomic<std::uint64_t>, kFrontendNameBytes / 8> name{};  // NUL-padded
  Cell requests;
  Cell server_errors;  // 5xx
};

struct alignas(64) WorkerSlot {
  std::atomic<std::int32_t> pid{0};  // 0 = free
  std::atomic<std::int64_t> started_unix{0};
  std::array<Cell, kCodes + 1> requests;  // [0]: outside 100..599
  Histogram request_duration;
  Histogram backend_duration;
  std::array<Cell, static_cast<std::size_t>(Counter::count)> counters;
  std::array<std::atomic<std::int64_t>, static_cast<std::size_t>(Gauge::count)> gauges{};
  std::array<FrontendEntry, kFrontendEntries> frontends;

  void record_request(unsigned status, std::uint64_t total_us, std::uint64_t backend_us);
  // Counts one request for `host` (space-saving: a full table replaces its least-used entry).
  void record_frontend(std::string_view host, bool server_error);
  void add_frontend(std::uint64_t hash, std::string_view host, std::uint64_t requests,
                    std::uint64_t server_errors);
  void fold_into(WorkerSlot& retired) const;  // counters only
  void reset();
};

// One frontend's counts summed over the workers.
struct FrontendTotals {
  std::string name;
  std::uint64_t requests = 0;
  std::uint64_t server_errors = 0;
};

struct WorkerView {
  pid_t pid = 0;
  std::int64_t started_unix = 0;
  std::uint64_t requests = 0;
  std::array<std::int64_t, static_cast<std::size_t>(Gauge::count)> gauges{};
};

// Everything a scrape shows: the retired slot plus every live one, read consistently.
struct Snapshot {
  std::array<std::uint64_t, kCodes + 1> requests{};
  std::array<std::uint64_t, kBuckets> request_duration{};
  std::uint64_t request_duration_sum_us = 0;
  std::array<std::uint64_t, kBuckets> backend_duration{};
  std::uint64_t backend_duration_sum_us = 0;
  std::array<std::uint64_t, static_cast<std::size_t>(Counter::count)> counters{};
  std::array<std::int64_t, static_cast<std::size_t>(Gauge::count)> gauges{};  // live workers
  std::array<std::uint64_t, static_cast<std::size_t>(MasterCounter::count)> master{};
  std::vector<WorkerView> workers;
  std::vector<FrontendTotals> frontends;  // busiest first

  std::uint64_t total_requests() const;
};

class MetricsTable {
 public:
  static constexpr std::size_t kSlots = 128;

  // Creates a table (master, before forking). Throws std::system_error.
  MetricsTable();
  // Maps an inherited table (after an in-place upgrade). Throws std::system_error.
  explicit MetricsTable(int memfd);
  ~MetricsTable();
  MetricsTable(const MetricsTable&) = delete;
  MetricsTable& operator=(const MetricsTable&) = delete;

  // The master's table: the inherited one (memfd >= 0) or a new one; null, with a warning
  // logged, when it cannot be made (the service then runs without metrics).
  static std::unique_ptr<MetricsTable> open(int inherited_memfd);

  int fd() const { return fd_; }  // for the upgrade

  // Master: a slot for a worker about to be forked (nullptr when all are taken; the child
  // inherits the pointer), its owner once forked, its release if the fork failed, and the fold
  // of a worker that is gone (found by pid: an upgraded master adopts its predecessor's).
  WorkerSlot* reserve();
  void assign(WorkerSlot* slot, pid_t pid);
  void release(WorkerSlot* slot);
  void retire(pid_t pid);
  void count(MasterCounter counter);

  // `frontends`: how many of the busiest to include (0 = none).
  Snapshot snapshot(std::size_t frontends) const;

 private:
  struct Shared;
  void map(int fd);

  int fd_ = -1;
  Shared* shared_ = nullptr;
};

}  // namespace hipache::metrics
