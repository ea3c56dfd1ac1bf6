#include "process/upgrade.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "process/sd_notify.hpp"
#include "process/supervisor.hpp"
#include "process/worker_process.hpp"

namespace hipache::process {

namespace {

constexpr const char* kVariable = "HIPACHE_INHERIT";
constexpr auto kCheckTimeout = std::chrono::seconds(30);

void set_inheritable(int fd, bool inheritable) {
  if (fd < 0) return;
  const int flags = ::fcntl(fd, F_GETFD);
  if (flags < 0) return;
  ::fcntl(fd, F_SETFD, inheritable ? flags & ~FD_CLOEXEC : flags | FD_CLOEXEC);
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  std::string part;
  while (std::getline(stream, part, separator)) {
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

int to_int(const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (errno != 0 || end == text.c_str() || *end != '\0' || value < 0 || value > INT_MAX) return -1;
  return static_cast<int>(value);
}

std::string join_pids(const std::vector<pid_t>& pids) {
  std::string text;
  for (const auto pid : pids) {
    if (!text.empty()) text += ',';
    text += std::to_string(pid);
  }
  return text;
}

std::vector<pid_t> parse_pids(const std::string& text) {
  std::vector<pid_t> pids;
  for (const auto& part : split(text, ',')) {
    if (const int pid = to_int(part); pid > 0) pids.push_back(pid);
  }
  return pids;
}

// The ticket keys in an anonymous file: out of the environment, which children would inherit.
int keys_file(const std::array<unsigned char, 80>& keys) {
  const int fd = ::memfd_create("hipache-ticket-keys", MFD_CLOEXEC);
  if (fd < 0) return -1;
  if (::write(fd, keys.data(), keys.size()) != static_cast<ssize_t>(keys.size()) ||
      ::lseek(fd, 0, SEEK_SET) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

std::string own_binary_path() {
  char path[PATH_MAX];
  const auto length = ::readlink("/proc/self/exe", path, sizeof path - 1);
  if (length <= 0) return {};
  return std::string(path, static_cast<std::size_t>(length));
}

std::string check_binary(const std::string& binary, const std::string& config_path) {
  if (::access(binary.c_str(), X_OK) != 0) {
    return binary + " is not executable: " + std::strerror(errno);
  }
  const pid_t pid = ::fork();
  if (pid < 0) return std::string("fork: ") + std::strerror(errno);
  if (pid == 0) {
    // Its configuration dump is not wanted; its errors go to the log with ours.
    const int null = ::open("/dev/null", O_WRONLY);
    if (null >= 0) ::dup2(null, STDOUT_FILENO);
    // Nothing of the master's (listening sockets, the handover pair) goes to the check.
    ::close_range(STDERR_FILENO + 1, ~0U, 0);
    ::unsetenv(kVariable);
    ::execl(binary.c_str(), binary.c_str(), "--dry", "-c", config_path.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + kCheckTimeout;
  for (;;) {
    int status = 0;
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) {
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
      if (WIFEXITED(status)) {
        return binary + " --dry exited with status " + std::to_string(WEXITSTATUS(status));
      }
      return binary + " --dry was killed by signal " + std::to_string(WTERMSIG(status));
    }
    if (done < 0 && errno != EINTR) return std::string("waitpid: ") + std::strerror(errno);
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return binary + " --dry did not finish in time";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string exec_with(const std::string& binary, const std::vector<std::string>& argv,
                      const Inheritance& inheritance) {
  std::vector<int> passed;
  std::string listeners;
  for (const auto& listener : inheritance.listeners) {
    if (!listeners.empty()) listeners += ',';
    listeners += std::to_string(listener.fd) + "/" + std::to_string(listener.address.port) + "/" +
                 listener.address.address;
    passed.push_back(listener.fd);
  }
  std::string value = "listeners=" + listeners;
  if (inheritance.handover.valid()) {
    value += ";handover=" + std::to_string(inheritance.handover.send_fd) + "," +
             std::to_string(inheritance.handover.receive_fd);
    passed.push_back(inheritance.handover.send_fd);
    passed.push_back(inheritance.handover.receive_fd);
  }
  const int keys = inheritance.ticket_keys ? keys_file(*inheritance.ticket_keys) : -1;
  if (keys >= 0) {
    value += ";tickets=" + std::to_string(keys);
    passed.push_back(keys);
  }
  if (inheritance.metrics_fd >= 0) {
    value += ";metrics=" + std::to_string(inheritance.metrics_fd);
    passed.push_back(inheritance.metrics_fd);
  }
  value += ";serving=" + join_pids(inheritance.serving_workers);
  value += ";draining=" + join_pids(inheritance.draining_workers);

  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  for (const int fd : passed) set_inheritable(fd, true);
  ::setenv(kVariable, value.c_str(), 1);
  ::execv(binary.c_str(), args.data());
  const std::string why = std::strerror(errno);
  // Still the old image: everything as it was.
  ::unsetenv(kVariable);
  for (const int fd : passed) set_inheritable(fd, false);
  if (keys >= 0) ::close(keys);
  return "cannot execute " + binary + ": " + why;
}

std::string upgrade_in_place(const MasterStart& start, const std::string& config_path,
                             const Config& running, const Inheritance& inheritance) {
  spdlog::info("master: SIGUSR2, upgrading to {}", start.binary);
  try {
    if (!same_listeners(running, load_config(config_path))) {
      return "listen addresses changed; they take effect on restart only";
    }
  } catch (const std::exception& error) {
    return error.what();
  }
  if (auto refused = check_binary(start.binary, config_path); !refused.empty()) return refused;
  sd_notify("RELOADING=1");
  spdlog::default_logger()->flush();
  auto refused = exec_with(start.binary, start.argv, inheritance);
  sd_notify("READY=1");
  return refused;
}

std::vector<net::BoundListener> adopt_listeners(const Config& config,
                                                const Inheritance& inherited) {
  std::vector<net::BoundListener> listeners;
  std::vector<bool> used(inherited.listeners.size());
  for (const auto& address : config.listeners) {
    std::size_t i = 0;
    while (i < inherited.listeners.size() &&
           (used[i] || inherited.listeners[i].address.address != address.address ||
            inherited.listeners[i].address.port != address.port)) {
      ++i;
    }
    if (i == inherited.listeners.size()) {
      throw std::runtime_error("upgrade: no inherited socket for " + address.address + ":" +
                               std::to_string(address.port));
    }
    used[i] = true;
    listeners.push_back({inherited.listeners[i].fd, address});
  }
  for (std::size_t i = 0; i < used.size(); ++i) {
    if (!used[i]) ::close(inherited.listeners[i].fd);
  }
  return listeners;
}

std::optional<Inheritance> take_inheritance() {
  const char* raw = std::getenv(kVariable);
  if (raw == nullptr) return std::nullopt;
  const std::string value = raw;
  ::unsetenv(kVariable);
  Inheritance inheritance;
  for (const auto& entry : split(value, ';')) {
    const auto equals = entry.find('=');
    if (equals == std::string::npos) continue;
    const auto key = entry.substr(0, equals);
    const auto rest = entry.substr(equals + 1);
    if (key == "listeners") {
      for (const auto& item : split(rest, ',')) {
        const auto fields = split(item, '/');
        if (fields.size() != 3) continue;
        net::BoundListener listener;
        listener.fd = to_int(fields[0]);
        listener.address.port = static_cast<std::uint16_t>(to_int(fields[1]));
        listener.address.address = fields[2];
        if (listener.fd < 0) continue;
        set_inheritable(listener.fd, false);
        inheritance.listeners.push_back(listener);
      }
    } else if (key == "handover") {
      const auto fds = split(rest, ',');
      if (fds.size() == 2) inheritance.handover = {to_int(fds[0]), to_int(fds[1])};
      set_inheritable(inheritance.handover.send_fd, false);
      set_inheritable(inheritance.handover.receive_fd, false);
    } else if (key == "tickets") {
      const int fd = to_int(rest);
      std::array<unsigned char, 80> keys{};
      if (fd >= 0 &&
          ::pread(fd, keys.data(), keys.size(), 0) == static_cast<ssize_t>(keys.size())) {
        inheritance.ticket_keys = keys;
      }
      if (fd >= 0) ::close(fd);
    } else if (key == "metrics") {
      inheritance.metrics_fd = to_int(rest);
      set_inheritable(inheritance.metrics_fd, false);
    } else if (key == "serving") {
      inheritance.serving_workers = parse_pids(rest);
    } else if (key == "draining") {
      inheritance.draining_workers = parse_pids(rest);
    }
  }
  return inheritance;
}

std::vector<WorkerProcess> previous_image_workers(const Inheritance& inherited,
                                                  WorkerProcess::Clock::duration kill_after) {
  std::vector<WorkerProcess> workers;
  const auto now = WorkerProcess::Clock::now();
  for (const pid_t pid : inherited.serving_workers) {
    workers.push_back(WorkerProcess{pid, now, std::nullopt, std::nullopt});
    workers.back().old_generation = true;
  }
  for (const pid_t pid : inherited.draining_workers) {
    workers.push_back(WorkerProcess{pid, now, std::nullopt, std::nullopt});
    workers.back().draining = true;
    workers.back().draining_since = now;
    workers.back().kill_at = now + kill_after;
  }
  return workers;
}

}  // namespace hipache::process
