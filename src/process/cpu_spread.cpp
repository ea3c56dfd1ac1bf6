#include "process/cpu_spread.hpp"

#include <sched.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace hipache::process {

namespace {

// User and system time, so a worker busy relaying in the kernel (most of its time) counts.
std::chrono::nanoseconds thread_cpu_time() {
  timespec now{};
  if (::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now) != 0) return {};
  return std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec);
}

}  // namespace

std::chrono::milliseconds CpuSpread::look() {
  const auto now = Clock::now();
  const auto cpu_time = thread_cpu_time();
  const bool first = last_look_ == Clock::time_point{};
  const std::chrono::duration<double> wall = now - last_look_;
  const std::chrono::duration<double> ran = cpu_time - cpu_time_at_last_look_;
  last_look_ = now;
  cpu_time_at_last_look_ = cpu_time;
  if (first || ran < kBusyShare * wall) return kIdleLookInterval;
  move_if_shared(now);
  return kBusyLookInterval;
}

void CpuSpread::move_if_shared(Clock::time_point now) {
  const int cpu = ::sched_getcpu();
  if (cpu < 0) return;
  loads_.publish_busy_cpu(slot_, cpu);
  if (now < next_move_allowed()) return;
  cpu_set_t allowed;
  if (::sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return;
  const auto target = loads_.cpu_to_move_to(slot_, cpu, allowed);
  if (!target) return;

  cpu_set_t only_target;
  CPU_ZERO(&only_target);
  CPU_SET(*target, &only_target);
  if (::sched_setaffinity(0, sizeof(only_target), &only_target) != 0) return;
  if (::sched_setaffinity(0, sizeof(allowed), &allowed) != 0) {
    // Not expected (the set was just read back); the worker keeps working, on one CPU.
    spdlog::warn("worker {}: cannot float again after moving to CPU {}: {}", ::getpid(), *target,
                 std::strerror(errno));
  }
  loads_.publish_busy_cpu(slot_, *target);
  ++moves_;
  pause_ = now - last_move_ < kHeld ? std::min(pause_ * 2, kLongestPause) : kFirstPause;
  last_move_ = now;
  spdlog::debug("worker {}: busy on CPU {} beside another busy worker, moved to CPU {}", ::getpid(),
                cpu, *target);
}

}  // namespace hipache::process
