// Case-insensitive ASCII comparison for protocol tokens (field names, schemes, codings).
// Not boost::beast::iequals: Boost 1.81's reads one byte past the end of its arguments when
// they differ in case (found by fuzz_request), and the fuzzers' exact-size buffers catch that.
#pragma once

#include <string_view>

namespace hipache::http {

constexpr char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c;
}

constexpr bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

constexpr bool starts_with_ignoring_case(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && iequals(text.substr(0, prefix.size()), prefix);
}

}  // namespace hipache::http
