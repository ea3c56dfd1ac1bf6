// Number, time and address pieces the access log formats share (log/access_log.hpp).
#pragma once

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace hipache::log {

inline void append_number(std::string& out, std::uint64_t value) {
  char digits[24];
  const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
  out.append(digits, end);
}

inline void append_two_digits(std::string& out, int value) {
  out += static_cast<char>('0' + value / 10);
  out += static_cast<char>('0' + value % 10);
}

// The UTC calendar time of `when`, to the second.
inline std::tm utc_time(std::chrono::system_clock::time_point when) {
  const std::time_t t = std::chrono::system_clock::to_time_t(when);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return tm;
}

// "18:06:18"
inline void append_clock(std::string& out, const std::tm& tm) {
  append_two_digits(out, tm.tm_hour);
  out += ':';
  append_two_digits(out, tm.tm_min);
  out += ':';
  append_two_digits(out, tm.tm_sec);
}

// Seconds as Hipache printed them (milliseconds / 1000 in JavaScript): "0", "0.004", "1.25".
// Also a valid JSON number.
inline void append_seconds(std::string& out, std::chrono::milliseconds ms) {
  const auto total = static_cast<std::uint64_t>(std::max<std::int64_t>(ms.count(), 0));
  append_number(out, total / 1000);
  auto fraction = total % 1000;
  if (fraction == 0) return;
  char digits[4] = {static_cast<char>('0' + fraction / 100),
                    static_cast<char>('0' + fraction / 10 % 10),
                    static_cast<char>('0' + fraction % 10), 0};
  std::size_t len = 3;
  while (digits[len - 1] == '0') --len;
  out += '.';
  out.append(digits, len);
}

// Hipache listened dual-stack, so it saw IPv4 clients as IPv4-mapped IPv6 addresses: the
// remote field of an IPv4 client starts with "::ffff:" in both formats.
inline std::string_view remote_prefix(std::string_view remote) {
  in_addr ignored{};
  const std::string copy(remote);
  return inet_pton(AF_INET, copy.c_str(), &ignored) == 1 ? "::ffff:" : "";
}

}  // namespace hipache::log
