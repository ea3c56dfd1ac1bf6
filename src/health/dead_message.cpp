#include "health/dead_message.hpp"

#include <charconv>

#include "hipache/route.hpp"

namespace hipache::health {

namespace {

// Frontend lists hold at most what a Redis reply may (store/redis_connection.cpp): far less.
constexpr std::size_t kMaxBackends = 1 << 20;

std::optional<std::size_t> plain_number(std::string_view text) {
  std::size_t value = 0;
  if (text.empty() || text.size() > 7 || text.front() < '0' || text.front() > '9') {
    return std::nullopt;
  }
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Visible ASCII only: the name goes into Redis keys and, as the default Host, into the check
// request's header (the proxy publishes the normalised host, which is never longer than 255).
bool is_frontend_name(std::string_view name) {
  if (name.empty() || name.size() > 255) return false;
  for (const char c : name) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

}  // namespace

std::optional<DeadMessage> parse_dead_message(std::string_view payload) {
  // hchecker trims white space around the line; a trailing newline from redis-cli is common.
  while (!payload.empty() && (payload.back() == '\n' || payload.back() == '\r' ||
                              payload.back() == ' ' || payload.back() == '\t')) {
    payload.remove_suffix(1);
  }
  const auto first = payload.find(';');
  const auto last = payload.rfind(';');
  if (first == std::string_view::npos || last == first) return std::nullopt;
  const auto before_last = payload.rfind(';', last - 1);
  if (before_last == first) return std::nullopt;  // three fields
  const auto frontend = payload.substr(0, first);
  const auto url = payload.substr(first + 1, before_last - first - 1);
  const auto index = plain_number(payload.substr(before_last + 1, last - before_last - 1));
  const auto count = plain_number(payload.substr(last + 1));
  if (!index || !count || *count < 2 || *count > kMaxBackends || *index >= *count) {
    return std::nullopt;
  }
  if (!is_frontend_name(frontend) || url.empty() || url.size() > kMaxDeadMessageField) {
    return std::nullopt;
  }
  DeadMessage message{std::string(frontend), std::string(url), *index, *count};
  if (!parse_backend_url(message.backend_url).valid) return std::nullopt;
  return message;
}

}  // namespace hipache::health
