// Fuzz target: the RESP decoder the Redis connection uses on everything the server sends
// (hipache::store::decode_replies: hiredis' reader, converted to RedisReply values).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "store/redis_connection.hpp"

namespace {

std::size_t walk(const hipache::store::RedisReply& reply) {
  std::size_t n = 1 + reply.text.size();
  for (const auto& element : reply.elements) n += walk(element);
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  hipache::store::RedisReplies replies;
  const bool ok =
      hipache::store::decode_replies({reinterpret_cast<const char*>(data), size}, replies);
  std::size_t total = 0;
  for (const auto& reply : replies) total += walk(reply);
  (void)ok;
  (void)total;
  return 0;
}
