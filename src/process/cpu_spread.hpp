// Floating workers that move apart when two busy ones share a CPU.
//
// Left to the kernel, two busy workers sometimes run on the same CPU for tens of milliseconds
// while another CPU serves the clients and backends of the same machine: each then runs a full
// scheduler tick (4 ms at HZ=250) while the other waits, and the requests of the waiting one
// take 4 ms longer (bench, 2 CPUs: p99 of small responses 4.3-4.8 ms floating, 2.3-2.9 ms
// bound; `perf sched timehist` shows the two workers alternating on one CPU, 11 % of the time
// against 5 % for HAProxy's two threads). Binding (server.cpuAffinity) prevents it but keeps a
// worker off an idle CPU when other processes crowd its own.
//
// So each worker looks at itself every kBusyLookInterval while busy (on a CPU at least
// kBusyShare of the time since its last look; kIdleLookInterval otherwise) and notes its CPU in
// WorkerLoads. When a busy worker with a lower slot is on the same CPU and a CPU of its allowed
// set has no busy worker, it moves there: bound to that CPU for an instant, which migrates it at
// once, then floating again from there. A worker that keeps being put back (other load on the
// CPU it left for) waits twice as long before each next move, up to kLongestPause.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "process/worker_loads.hpp"

namespace hipache::process {

class CpuSpread {
 public:
  using Clock = std::chrono::steady_clock;

  static constexpr std::chrono::milliseconds kBusyLookInterval{2};
  static constexpr std::chrono::milliseconds kIdleLookInterval{100};
  // A tenth, not more: two workers sharing a CPU with a client or a backend get about a quarter
  // of it each, and a higher bar missed some of those.
  static constexpr double kBusyShare = 0.1;
  static constexpr std::chrono::milliseconds kFirstPause{10};
  static constexpr std::chrono::milliseconds kLongestPause{2000};
  // A move this soon after the previous one means the last did not hold.
  static constexpr std::chrono::milliseconds kHeld{200};

  CpuSpread(WorkerLoads& loads, std::size_t slot) : loads_(loads), slot_(slot) {}

  // Measures the worker's share of CPU time since the last look, reports its CPU when busy, and
  // moves it if it shares that CPU with another busy worker. Returns when to look next.
  std::chrono::milliseconds look();

  std::uint64_t moves() const { return moves_; }
  Clock::time_point next_move_allowed() const { return last_move_ + pause_; }

 private:
  void move_if_shared(Clock::time_point now);

  WorkerLoads& loads_;
  std::size_t slot_;
  Clock::time_point last_look_{};
  std::chrono::nanoseconds cpu_time_at_last_look_{};
  Clock::time_point last_move_{};
  std::chrono::milliseconds pause_ = kFirstPause;
  std::uint64_t moves_ = 0;
};

}  // namespace hipache::process
