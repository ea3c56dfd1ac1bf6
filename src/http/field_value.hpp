// Which bytes may appear in a header field value (RFC 9110 section 5.5): HTAB, SP, VCHAR and
// obs-text. Anything else written into a header (CR, LF, NUL) would split it into new fields.
#pragma once

#include <string>
#include <string_view>

namespace hipache::http {

constexpr bool is_field_value_byte(char c) {
  const auto byte = static_cast<unsigned char>(c);
  return byte == '\t' || (byte >= 0x20 && byte != 0x7f);
}

constexpr bool is_field_value(std::string_view value) {
  for (const char c : value) {
    if (!is_field_value_byte(c)) return false;
  }
  return true;
}

// RFC 9110 section 5.6.2: tchar, the bytes of a token (a field name, among others).
constexpr bool is_token_byte(char c) {
  constexpr std::string_view kSymbols = "!#$%&'*+-.^_`|~";
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         kSymbols.find(c) != std::string_view::npos;
}

constexpr bool is_token(std::string_view text) {
  if (text.empty()) return false;
  for (const char c : text) {
    if (!is_token_byte(c)) return false;
  }
  return true;
}

// `value` with each byte not allowed in a field value written as %XX (uppercase hex), for values
// that come from Redis (a frontend's identifier) and go into a header.
std::string escape_field_value(std::string_view value);

}  // namespace hipache::http
