// Fuzz target: payloads of the `dead` channel (health/dead_message.hpp), which anyone able to
// PUBLISH on the Redis server writes. Never crashes; an accepted message is one the checker can
// use as is: a visible-ASCII frontend, a valid backend URL, an index inside a count of 2 or more,
// and nothing that could split a header or a key.
#include <cstddef>
#include <cstdint>
#include <string>

#include "health/dead_message.hpp"
#include "hipache/route.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string payload(reinterpret_cast<const char*>(data), size);
  const auto message = hipache::health::parse_dead_message(payload);
  if (!message) return 0;
  if (message->count < 2 || message->index >= message->count) __builtin_trap();
  if (message->frontend.empty() || message->frontend.size() > 255) __builtin_trap();
  for (const char c : message->frontend) {
    if (c <= 0x20 || c >= 0x7f || c == ';') __builtin_trap();
  }
  if (!hipache::parse_backend_url(message->backend_url).valid) __builtin_trap();
  if (message->backend_url.find_first_of("\r\n") != std::string::npos) __builtin_trap();
  // The fields came from the payload, in order.
  if (payload.find(message->frontend + ";" + message->backend_url + ";") != 0) __builtin_trap();
  return 0;
}
