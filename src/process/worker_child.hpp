// A worker's process as the master forks it: the child's side, before and after its body
// (process/worker.hpp's run_worker) runs.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <functional>
#include <initializer_list>
#include <optional>

namespace hipache::process {

// In the forked child of `master`: sets the process up as a worker (its signal mask from the
// master's `original_mask`, its end with the master, without the master's descriptors
// `close_fds`, on `cpu` for server.cpuAffinity), runs `serve` and exits with its code.
[[noreturn]] void run_worker_process(pid_t master, const sigset_t& original_mask,
                                     std::initializer_list<int> close_fds, std::optional<int> cpu,
                                     const std::function<int()>& serve);

}  // namespace hipache::process
