// In-place binary upgrade (SIGUSR2, docs/operations.md): the master re-executes its binary file
// with the same PID (systemd's MAINPID holds) and hands the new image what must outlive the old
// one through inherited descriptors named in one environment variable: the listening sockets
// (never closed, so no connection attempt is refused), the connection-handover socket pair, the
// TLS session-ticket keys (in a memfd: resumption keeps working) and the workers still running,
// which the new image drains once its own workers are ready.
#pragma once

#include <sys/types.h>

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "net/listeners.hpp"
#include "process/worker_process.hpp"
#include "proxy/handover.hpp"

namespace hipache::process {

struct Inheritance {
  std::vector<net::BoundListener> listeners;
  proxy::HandoverSocket handover;
  std::optional<std::array<unsigned char, 80>> ticket_keys;
  std::vector<pid_t> serving_workers;   // the old generation: drained once the new is ready
  std::vector<pid_t> draining_workers;  // drained already: reaped, killed if they overstay
  int metrics_fd = -1;                  // the shared metrics table (metrics/table.hpp)
};

// The binary file this process was started from, as an absolute path: after the file is
// replaced, the path names the new build (/proc/self/exe would name the old, deleted one).
std::string own_binary_path();

// Runs `binary --dry -c config_path` and waits for it (bounded): empty when it succeeded, else
// why not. A binary that cannot even load the configuration must never replace a working one.
std::string check_binary(const std::string& binary, const std::string& config_path);

// Replaces this process's image with `argv` run from `binary`, passing `inheritance`. Returns
// only when that failed, with the reason (the caller keeps serving).
std::string exec_with(const std::string& binary, const std::vector<std::string>& argv,
                      const Inheritance& inheritance);

// The inherited listening sockets for `config`'s listeners (the old image made sure the addresses
// are the same); those not needed are closed. Throws std::runtime_error for an address with none.
std::vector<net::BoundListener> adopt_listeners(const Config& config, const Inheritance& inherited);

// The previous image's workers, children of the new image still: the serving ones as its old
// generation (drained once its own workers are ready), the draining ones with `kill_after` left
// before SIGKILL.
std::vector<WorkerProcess> previous_image_workers(const Inheritance& inherited,
                                                  WorkerProcess::Clock::duration kill_after);

struct MasterStart;

// The whole upgrade from the old image's side: refused (with the reason returned, the old image
// serving on) when the configuration no longer loads or listens elsewhere, or the new binary
// fails its check; else the image is replaced and this does not return.
std::string upgrade_in_place(const MasterStart& start, const std::string& config_path,
                             const Config& running, const Inheritance& inheritance);

// In the new image: what the old one passed, if this process was started by an upgrade; the
// descriptors are close-on-exec again and the environment variable is gone.
std::optional<Inheritance> take_inheritance();

}  // namespace hipache::process
