// One worker: a single-threaded event loop serving the listening sockets the master bound and
// forked it with (process/supervisor.hpp). It only wires: the accept loops (net/accept_loop),
// the client connections (proxy/), the store (store/), the access log, signals and the drain.
#pragma once

#include <vector>

#include "hipache/config.hpp"
#include "metrics/table.hpp"
#include "net/listeners.hpp"
#include "net/tls.hpp"
#include "process/worker_loads.hpp"
#include "proxy/handover.hpp"

namespace hipache::process {

// Serves until SIGTERM (graceful: stop accepting, finish in-flight requests within
// server.gracefulWait, exit) or SIGINT / a second SIGTERM (at once). SIGUSR1 reopens the access
// log. Once every listener accepts, one byte is written to `ready_fd` (when >= 0) for the
// master's readiness report. Returns the process exit code.
// `tls` holds the contexts of the https listeners (built by the master before forking).
// `turn`: the worker's place in the master's load table (balances accepts between workers).
// `handover`: the socket pair on which replaced workers hand their idle connections to serving
// ones (proxy/handover.hpp); SIGUSR2 drains this worker that way.
// `metrics`: the master's shared table and this worker's slot in it (either may be null).
struct WorkerMetrics {
  const metrics::MetricsTable* table = nullptr;
  metrics::WorkerSlot* slot = nullptr;
};
int run_worker(const Config& config, const std::vector<net::BoundListener>& listeners,
               const net::ServerTls& tls, int ready_fd = -1, AcceptTurn turn = {},
               proxy::HandoverSocket handover = {}, WorkerMetrics metrics = {});

}  // namespace hipache::process
