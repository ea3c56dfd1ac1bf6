#include "health/check_lock.hpp"

#include <charconv>

namespace hipache::health {

namespace {

// Compare-and-set on one hash field, atomically on the server. Returns the value found.
constexpr const char* kSwapScript =
    "local v = redis.call('HGET', KEYS[1], ARGV[1]) or ''\n"
    "if v == ARGV[2] then\n"
    "  if ARGV[3] == '' then redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "  else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end\n"
    "end\n"
    "return v\n";

// The leading decimal seconds of `text` ("1700000000" or hchecker's "1700000000.123456").
bool leading_seconds(std::string_view text, std::int64_t& out) {
  const auto dot = text.find('.');
  const auto digits = text.substr(0, dot);
  if (digits.empty() || digits.size() > 18) return false;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), out);
  return ec == std::errc() && end == digits.data() + digits.size() && out >= 0;
}

}  // namespace

std::string lock_owner(std::string_view hostname, long pid) {
  std::string owner(kOwnValueMark);
  owner += hostname;
  owner += '#';
  owner += std::to_string(pid);
  return owner;
}

std::string lock_value(std::string_view owner, std::int64_t expires_at) {
  std::string value(owner);
  value += ';';
  value += std::to_string(expires_at);
  return value;
}

LockHolder judge_lock(std::string_view value, std::string_view owner, std::int64_t now) {
  if (value.empty()) return LockHolder::nobody;
  const auto split = value.rfind(';');
  if (split == std::string_view::npos) return LockHolder::stale;  // hchecker's passing "1"
  const auto holder = value.substr(0, split);
  if (holder == owner) return LockHolder::us;
  std::int64_t stamp = 0;
  if (!leading_seconds(value.substr(split + 1), stamp)) return LockHolder::stale;
  if (holder.starts_with(kOwnValueMark)) {
    if (stamp > now + kMaxLockAhead) return LockHolder::stale;
    return now < stamp ? LockHolder::other : LockHolder::stale;
  }
  // hchecker: the time it took the lock.
  if (stamp > now + kMaxLockAhead) return LockHolder::stale;
  return now - stamp < kForeignLockHold ? LockHolder::other : LockHolder::stale;
}

store::RedisCommand swap_command(const std::string& hash, const std::string& field,
                                 const std::string& expected, const std::string& desired) {
  return {"EVAL", kSwapScript, "1", hash, field, expected, desired};
}

}  // namespace hipache::health
