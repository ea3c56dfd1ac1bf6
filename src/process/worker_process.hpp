// A worker as the master keeps track of it, and the facts about processes and the machine the
// master reads or sets (exit status, RSS, allowed CPUs, CPU binding).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "hipache/config.hpp"

namespace hipache::process {

struct WorkerProcess {
  using Clock = std::chrono::steady_clock;

  pid_t pid;
  Clock::time_point started;
  std::optional<std::size_t> load_slot;  // in the master's WorkerLoads
  std::optional<int> cpu;                // the CPU it is bound to (server.cpuAffinity)
  bool draining = false;        // told to stop: no longer counted among the serving workers
  bool old_generation = false;  // an upgraded master's predecessor's: drained once ours are ready
  Clock::time_point draining_since{};
  Clock::time_point kill_at{};  // SIGKILL if still alive by then (draining workers only)

  bool killed() const { return kill_at == Clock::time_point::max(); }  // SIGKILL sent
};

// "exited with status 1", "killed by signal 9 (Killed)"...
std::string describe_exit(int status);

// Whether the two configurations listen on the same addresses (the sockets in hand are kept).
bool same_listeners(const Config& a, const Config& b);

// The CPUs this process may run on.
std::vector<int> allowed_cpus();

// Of `allowed`, the CPU with the fewest serving workers (the lowest-numbered of those).
int least_used_cpu(const std::vector<int>& allowed, const std::vector<WorkerProcess>& workers);

// Binds this process to `cpu` (server.cpuAffinity); a failure is logged, not fatal.
void bind_to_cpu(int cpu);

// Resident set size of a process in bytes (from /proc), 0 if it cannot be read.
std::size_t resident_bytes(int pid);

}  // namespace hipache::process
