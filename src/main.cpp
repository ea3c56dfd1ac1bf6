// argv -> config -> listeners -> master (which forks the workers). Nothing else lives here.
// After an in-place upgrade (process/upgrade.hpp) the listeners and ticket keys are inherited.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include "hipache/config.hpp"
#include "net/listeners.hpp"
#include "net/tls.hpp"
#include "process/privileges.hpp"
#include "process/supervisor.hpp"
#include "process/upgrade.hpp"

namespace {

constexpr const char* kUsage =
    "Usage: hipache [options]\n"
    "  -c, --config FILE  configuration file (default: config/config.json, or\n"
    "                     config/config_<SETTINGS_FLAVOR>.json when SETTINGS_FLAVOR is set)\n"
    "  -d, --dry          load and validate the configuration, print it, and exit\n"
    "  -h, --help         show this help\n"
    "  -V, --version      print the version\n";

struct Options {
  std::string config_path;
  bool dry = false;
};

// Returns -1 to go on, else the exit code.
int parse_arguments(int argc, char** argv, Options& options) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      return 0;
    }
    if (arg == "-V" || arg == "--version") {
      std::cout << "hipache " << HIPACHE_VERSION << "\n";
      return 0;
    }
    if (arg == "-d" || arg == "--dry") {
      options.dry = true;
    } else if (arg == "-c" || arg == "--config") {
      if (i + 1 >= argc) {
        std::cerr << "hipache: " << arg << " needs a file name\n" << kUsage;
        return 2;
      }
      options.config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      options.config_path = arg.substr(9);
    } else {
      std::cerr << "hipache: unknown option " << arg << "\n" << kUsage;
      return 2;
    }
  }
  if (options.config_path.empty()) options.config_path = hipache::default_config_path();
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  // A closed stdout/stderr pipe or peer must surface as an error code, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  Options options;
  if (const int code = parse_arguments(argc, argv, options); code >= 0) return code;

  auto logger = spdlog::stderr_color_mt("hipache");
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e [%P] %l: %v");
  spdlog::set_default_logger(logger);
  hipache::process::MasterStart start;
  start.argv.assign(argv, argv + argc);
  start.binary = hipache::process::own_binary_path();
  start.inherited = hipache::process::take_inheritance();

  hipache::Config config;
  try {
    config = hipache::load_config(options.config_path);
  } catch (const hipache::ConfigError& error) {
    std::cerr << "hipache: " << error.what() << "\n";
    return 1;
  }
  std::shared_ptr<hipache::net::ServerTls> tls;
  try {
    // TLS material is loaded before anything is bound, so a bad key fails like a bad config.
    // An upgraded master keeps the ticket keys: sessions resume across the upgrade.
    hipache::net::ServerTls previous;
    if (start.inherited && start.inherited->ticket_keys) {
      previous.ticket_keys = *start.inherited->ticket_keys;
    }
    tls = hipache::net::make_server_tls(
        config, start.inherited && start.inherited->ticket_keys ? &previous : nullptr,
        config.warnings);
  } catch (const std::exception& error) {
    std::cerr << "hipache: " << error.what() << "\n";
    return 1;
  }
  for (const auto& warning : config.warnings) spdlog::warn("{}", warning);
  if (config.server.debug) spdlog::set_level(spdlog::level::debug);
  if (options.dry) {
    std::cout << hipache::describe_config(config) << "\n";
    return 0;
  }

  std::vector<hipache::net::BoundListener> listeners;
  try {
    listeners = start.inherited ? hipache::process::adopt_listeners(config, *start.inherited)
                                : hipache::net::bind_listeners(config);
    hipache::process::drop_privileges(config.user, config.group);
  } catch (const std::exception& error) {
    std::cerr << "hipache: " << error.what() << "\n";
    return 1;
  }
  for (const auto& listener : listeners) {
    spdlog::info("listening on {}{}:{}", listener.address.tls ? "https://" : "http://",
                 listener.address.address, listener.address.port);
  }
  return hipache::process::run_supervisor(options.config_path, std::move(config),
                                          std::move(listeners), std::move(tls), std::move(start));
}
