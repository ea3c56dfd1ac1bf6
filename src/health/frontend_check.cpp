#include "health/frontend_check.hpp"

#include "hipache/router.hpp"

namespace hipache::health {

std::vector<store::RedisCommand> listing_commands(const std::string& prefix,
                                                  const std::string& frontend, std::size_t index) {
  std::vector<store::RedisCommand> commands;
  const auto position = std::to_string(index + 1);  // element 0 is the identifier
  for (const auto& candidate : host_candidates(frontend)) {
    const auto key = prefix + "frontend:" + candidate;
    commands.push_back({"LLEN", key});
    commands.push_back({"LINDEX", key, position});
  }
  return commands;
}

std::size_t listing_reply_count(const std::string& frontend) {
  return 2 * host_candidates(frontend).size();
}

bool still_listed(const store::RedisReplies& replies, std::size_t offset,
                  const std::string& frontend, const std::string& url) {
  const auto count = listing_reply_count(frontend);
  if (offset + count > replies.size()) return false;
  for (std::size_t i = offset; i < offset + count; i += 2) {
    const auto& length = replies[i];
    const auto& element = replies[i + 1];
    if (length.kind != store::RedisReply::Kind::integer) return false;  // WRONGTYPE: not a list
    if (length.integer == 0) continue;
    return element.kind == store::RedisReply::Kind::string && element.text == url;
  }
  return false;
}

}  // namespace hipache::health
