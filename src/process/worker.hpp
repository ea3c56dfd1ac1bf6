// One worker: an event loop serving the listening sockets it is given. Today main() runs a
// single worker in-process; the master/worker supervisor forks several and passes the same
// descriptors (see ARCHITECTURE.md, process/).
#pragma once

#include <vector>

#include "hipache/config.hpp"
#include "net/listeners.hpp"

namespace hipache::process {

// Runs until SIGTERM/SIGINT. Returns the process exit code.
int run_worker(const Config& config, const std::vector<net::BoundListener>& listeners);

}  // namespace hipache::process
