// The JSON access-log format: one object per line, every string escaped so that the line is
// valid JSON whatever bytes a client sent (docs/operations.md lists the fields).
#include "log/access_log.hpp"
#include "log/log_text.hpp"

namespace hipache::log {

namespace {

constexpr std::string_view kHex = "0123456789abcdef";

void append_unicode_escape(std::string& out, unsigned char byte) {
  out += "\\u00";
  out += kHex[byte >> 4];
  out += kHex[byte & 0xf];
}

bool is_continuation(unsigned char byte) {
  return (byte & 0xc0) == 0x80;
}

// The length of the well-formed UTF-8 sequence at the start of `text` (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF), or 0.
std::size_t utf8_sequence_length(std::string_view text) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(0);
  std::size_t length = 0;
  unsigned char second_min = 0x80;
  unsigned char second_max = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) second_min = 0xa0;  // overlong
    if (lead == 0xed) second_max = 0x9f;  // surrogates
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) second_min = 0x90;  // overlong
    if (lead == 0xf4) second_max = 0x8f;  // above U+10FFFF
  } else {
    return 0;
  }
  if (text.size() < length || byte(1) < second_min || byte(1) > second_max) return 0;
  for (std::size_t i = 2; i < length; ++i) {
    if (!is_continuation(byte(i))) return 0;
  }
  return length;
}

// The inside of a JSON string. Well-formed UTF-8 is copied; quote, backslash and control bytes (and
// DEL, for terminals) are escaped; a byte that is not part of well-formed UTF-8 is written as
// \u00XX, the character of that byte in ISO-8859-1 (HTTP's historical reading of header bytes), so
// nothing the client sent is lost and the line stays valid JSON.
void append_json_chars(std::string& out, std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      const std::size_t length = utf8_sequence_length(text.substr(i));
      if (length == 0) {
        append_unicode_escape(out, c);
        ++i;
      } else {
        out.append(text.substr(i, length));
        i += length;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          append_unicode_escape(out, c);
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
}

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  append_json_chars(out, text);
  out += '"';
}

// A string, or null when `text` is `none`.
void append_json_string_or_null(std::string& out, std::string_view text, std::string_view none) {
  if (text == none) {
    out += "null";
  } else {
    append_json_string(out, text);
  }
}

// "2026-11-23T18:06:18.123Z"
void append_iso_time(std::string& out, std::chrono::system_clock::time_point when) {
  const auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(
                          when - std::chrono::floor<std::chrono::seconds>(when))
                          .count();
  const std::tm tm = utc_time(when);
  out += '"';
  append_number(out, static_cast<std::uint64_t>(tm.tm_year + 1900));
  out += '-';
  append_two_digits(out, tm.tm_mon + 1);
  out += '-';
  append_two_digits(out, tm.tm_mday);
  out += 'T';
  append_clock(out, tm);
  out += '.';
  out += static_cast<char>('0' + millis / 100);
  append_two_digits(out, static_cast<int>(millis % 100));
  out += "Z\"";
}

}  // namespace

void format_access_json(const AccessLogEntry& e, std::string& out) {
  out += "{\"time\":";
  append_iso_time(out, e.when);
  out += ",\"remote\":\"";
  out += remote_prefix(e.remote);
  append_json_chars(out, e.remote);
  out += '"';
  out += ",\"method\":";
  append_json_string(out, e.method);
  out += ",\"url\":";
  append_json_string(out, e.target);
  out += ",\"protocol\":";
  append_json_string(out, e.protocol);
  out += ",\"status\":";
  append_number(out, e.status);
  out += ",\"bytes\":";
  append_number(out, e.bytes_sent);
  out += ",\"referer\":";
  append_json_string(out, e.referer);
  out += ",\"user_agent\":";
  append_json_string(out, e.user_agent);
  out += ",\"vhost\":";
  append_json_string_or_null(out, e.identifier, "-");
  out += ",\"total_seconds\":";
  append_seconds(out, e.total);
  out += ",\"backend_seconds\":";
  append_seconds(out, e.backend);
  out += ",\"request_id\":";
  append_json_string_or_null(out, e.request_id, "");
  out += ",\"backend\":";
  append_json_string_or_null(out, e.backend_url, "");
  out += ",\"attempts\":";
  append_number(out, e.attempts);
  out += "}\n";
}

}  // namespace hipache::log
