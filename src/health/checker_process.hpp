// The main of the active health checker's process (process/checker_child.hpp forks it): one
// single-threaded event loop running an ActiveChecker until SIGTERM or SIGINT, which let its
// locks go before it exits.
#pragma once

#include "hipache/config.hpp"

namespace hipache::health {

// Returns the process exit code. The signals it handles (SIGTERM, SIGINT, SIGUSR1, SIGUSR2) are
// expected blocked on entry (the master forks with them blocked); they are unblocked once handled.
int run_checker(const Config& config);

}  // namespace hipache::health
