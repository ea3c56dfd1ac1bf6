// Who checks a backend: one lock per backend URL in the hash hipache-hchecker uses
// (`<prefix>hchecker`, field = the URL), so our checkers on several nodes, and hchecker processes
// beside them, never check one backend twice. The value names the holder; ours also carries its
// expiry, so a crashed node's backends are taken over by another. hchecker writes
// "<host>#<pid>;<unix>.<nanos>" (the time it took the lock) and never renews it: such a lock
// counts as held for kForeignLockHold after that time.
//
// Redis only swaps values (one small script, swap_command); the decisions are the pure
// functions below (tests/unit/check_lock_test.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "store/redis_connection.hpp"

namespace hipache::health {

inline constexpr std::string_view kLockHash = "hchecker";  // after the driver URL's prefix
inline constexpr std::string_view kOwnValueMark = "hipache:";
inline constexpr std::int64_t kForeignLockHold = 3600;    // s; hchecker's own limit is 1800
inline constexpr std::int64_t kMaxLockAhead = 86400 * 2;  // s; beyond: a bogus value, free

// "hipache:<hostname>#<pid>": ours, unique per checker process.
std::string lock_owner(std::string_view hostname, long pid);

// The value this checker writes: "<owner>;<expires at, Unix seconds>".
std::string lock_value(std::string_view owner, std::int64_t expires_at);

enum class LockHolder {
  nobody,  // no value: free
  us,      // our owner name
  other,   // someone else's, still valid
  stale,   // someone else's, expired (or unreadable, or absurdly far ahead): free to take
};

// Who holds a lock whose value is `value`, at Unix time `now`, for the checker `owner`.
LockHolder judge_lock(std::string_view value, std::string_view owner, std::int64_t now);

// EVAL of the swap: the field becomes `desired` (deleted when empty) if it holds `expected`
// (absent when empty). The reply is the value found, "" for none: the swap happened iff that
// equals `expected`.
store::RedisCommand swap_command(const std::string& hash, const std::string& field,
                                 const std::string& expected, const std::string& desired);

}  // namespace hipache::health
