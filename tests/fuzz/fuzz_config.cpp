// Fuzz target: the config loader on arbitrary text. The loader's contract is that nothing but
// hipache::ConfigError leaves it (the binary prints that one line and exits), so any other
// exception escapes this function and libFuzzer reports it as a crash ("uncaught exception").
// A config that loads is described (the --dry output) as well.
#include <cstddef>
#include <cstdint>
#include <string>

#include "hipache/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const hipache::Config config = hipache::parse_config(text, "fuzz.json");
    const std::string description = hipache::describe_config(config);
    if (description.empty()) __builtin_trap();
    // The endpoints were parsed from the first and last driver URL.
    if (config.driver.empty()) __builtin_trap();
  } catch (const hipache::ConfigError&) {
  }
  return 0;
}
