// How many client connections each worker holds, in memory the master shares with its workers.
//
// Every worker waits on the same listening sockets and the kernel wakes all of them for a new
// connection: whoever calls accept() first gets it. The worker that woke first used to take most
// of a burst (64 connections opened at once split 51/13, 11/53, ...), and one core then did most
// of the work while the other idled. Now a worker over its fair share waits a moment before it
// accepts, so that the others take the connection first (AcceptTurn).
//
// The table is mapped (MAP_SHARED) by the master before the first fork, so every worker sees the
// same one. The master gives each worker a slot and frees it when the worker is gone. A slot
// holds its worker's connection count (kNotAccepting once it drains) and when it last reported:
// a worker that has not reported for kStaleReport (stuck in a long computation, stopped by a
// debugger) is left out of the share, so that it cannot hold the others back.
//
// A slot also holds the CPU its worker last ran on while busy, for CpuSpread (floating workers
// that move apart when two busy ones share a CPU; see cpu_spread.hpp).
#pragma once

#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace hipache::process {

class WorkerLoads {
 public:
  static constexpr std::int64_t kNotAccepting = -1;
  // Workers report at least this often (and whenever they accept)...
  static constexpr std::chrono::milliseconds kReportInterval{100};
  // ...and one that has not reported for this long does not count.
  static constexpr std::chrono::milliseconds kStaleReport{500};

  // Workers with a slot at once: a reload runs the old workers beside the new ones, and a worker
  // over the memory limit runs beside its replacement.
  static constexpr std::size_t kSlots = 64;

  // Throws std::system_error if the shared mapping cannot be made.
  WorkerLoads();
  ~WorkerLoads();
  WorkerLoads(const WorkerLoads&) = delete;
  WorkerLoads& operator=(const WorkerLoads&) = delete;

  // Master: a slot for a worker about to be forked (nullopt when all are taken: that worker
  // then accepts without looking at the others), and its release once the worker is reaped.
  std::optional<std::size_t> claim();
  void release(std::size_t slot);

  // Worker: its current connection count, or kNotAccepting once it drains.
  void publish(std::size_t slot, std::int64_t connections);

  // Whether the worker in `slot` holds more than its share of the connections of the workers
  // accepting now (with some slack, so that balanced workers do not pass connections back and
  // forth one at a time).
  bool over_share(std::size_t slot) const;

  // A busy worker's report counts this long: it is busy again by then, or no longer.
  static constexpr std::chrono::milliseconds kBusyFresh{5};

  // Worker: it is busy on `cpu` now.
  void publish_busy_cpu(std::size_t slot, int cpu);
  // Where the worker in `slot`, busy on `cpu`, should move: a CPU of `allowed` with no busy
  // worker on it, when a busy worker with a lower slot shares `cpu` (of each pair sharing a CPU
  // only one moves). nullopt: stay.
  std::optional<int> cpu_to_move_to(std::size_t slot, int cpu, const cpu_set_t& allowed) const;

 private:
  struct Slot {
    std::atomic<std::int64_t> connections{kNotAccepting};
    std::atomic<std::int64_t> reported_ms{0};  // steady clock (CLOCK_MONOTONIC: system-wide)
    std::atomic<std::int32_t> busy_cpu{-1};
    std::atomic<std::int64_t> busy_ms{0};  // when its worker was last busy on busy_cpu
  };
  struct Table {
    std::atomic<std::size_t> in_use{0};  // one past the highest slot ever claimed
    Slot slots[kSlots];
  };
  static_assert(std::atomic<std::int64_t>::is_always_lock_free &&
                    std::atomic<std::int32_t>::is_always_lock_free &&
                    std::atomic<std::size_t>::is_always_lock_free,
                "shared between processes: must not need a lock");

  static std::int64_t now_ms();

  Table* table_;
  std::vector<bool> claimed_;  // the master's own bookkeeping
};

class CpuSpread;

// One worker's place in WorkerLoads, for its accept loops.
class AcceptTurn {
 public:
  // A worker over its share waits this long before it accepts a pending connection: time for a
  // worker with fewer connections, woken for the same connection, to finish what it is doing
  // and take it. Then it accepts the connection if still there.
  static constexpr std::chrono::microseconds kYield{1000};

  AcceptTurn() = default;  // no table: never yields
  AcceptTurn(WorkerLoads* loads, std::size_t slot) : loads_(loads), slot_(slot) {}

  // A connection is pending; `connections`: what the worker holds now. Returns how long to
  // wait before accepting it (zero: at once).
  std::chrono::microseconds before_accept(std::int64_t connections);
  // After a successful accept: whether the worker may take another pending connection at once.
  bool may_accept_more(std::int64_t connections);

  void publish(std::int64_t connections);
  void stop_accepting();

  // The worker's CPU spreading, in the same slot; nullopt without a table.
  std::optional<CpuSpread> cpu_spread() const;

 private:
  WorkerLoads* loads_ = nullptr;
  std::size_t slot_ = 0;
};

}  // namespace hipache::process
