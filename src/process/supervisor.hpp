// The master process (SPEC section 9): forks `server.workers` workers on the listening sockets it
// bound, replaces any that die (with back-off when they die at start), recycles workers whose
// RSS exceeds `server.memoryLimit`, and turns signals into graceful or fast stops, reloads and
// log reopening, in-place binary upgrades (SIGUSR2, process/upgrade.hpp). It never serves
// traffic, so nothing a worker does can take it down.
#pragma once

#include <string>
#include <vector>

#include "hipache/config.hpp"
#include "net/listeners.hpp"
#include "net/tls.hpp"
#include "process/upgrade.hpp"

namespace hipache::process {

// How this master image was started: what an upgrade re-executes, and what an upgrade passed.
struct MasterStart {
  std::vector<std::string> argv;
  std::string binary;  // own_binary_path() at start
  std::optional<Inheritance> inherited;
};

// Runs the master until it is stopped. `config_path` is re-read on SIGHUP. Returns the exit code.
int run_supervisor(const std::string& config_path, Config config,
                   std::vector<net::BoundListener> listeners, std::shared_ptr<net::ServerTls> tls,
                   MasterStart start = {});

}  // namespace hipache::process
