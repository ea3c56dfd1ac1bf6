// The access log: Hipache's line format (SPEC section 8) or one JSON object per line
// (server.accessLogFormat).
//
// Lines are buffered and written with one write(2) per flush on an O_APPEND descriptor, so a
// flush holds only whole lines and lines from several workers never interleave.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "hipache/config.hpp"

namespace hipache::log {

struct AccessLogEntry {
  std::string_view remote;  // the X-Real-IP value as forwarded
  std::string_view method;
  std::string_view target;
  std::string_view protocol = "HTTP/1.1";  // the client's: protocol_name()
  unsigned status = 0;
  std::uint64_t bytes_sent = 0;
  std::string_view referer;
  std::string_view user_agent;
  std::string_view identifier;  // "-" when no frontend matched
  std::chrono::milliseconds total{0};
  std::chrono::milliseconds backend{0};
  std::chrono::system_clock::time_point when;
  // In the JSON format only (Hipache's line has a fixed set of fields).
  std::string_view request_id;   // empty: none (server.requestIdHeader off)
  std::string_view backend_url;  // the backend whose answer was relayed; empty: none
  unsigned attempts = 0;         // backend attempts the request made
};

// "HTTP/1.0", "HTTP/1.1" or "HTTP/2.0" for a Beast-style version number (10, 11, 20).
std::string_view protocol_name(unsigned version);

// Append one formatted line (with '\n') to `out`. Pure, for tests.
void format_access_line(const AccessLogEntry& entry, std::string& out);  // Hipache's
void format_access_json(const AccessLogEntry& entry, std::string& out);

class AccessLog {
 public:
  // destination: a file path, "-"/"stdout" for standard output, empty for disabled.
  explicit AccessLog(std::string destination, AccessLogFormat format = AccessLogFormat::hipache);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  bool enabled() const { return !destination_.empty(); }
  void write(const AccessLogEntry& entry);
  // Writes buffered lines now (called on a short timer and before exit).
  void flush();
  // Closes and reopens the file (SIGUSR1, after logrotate moved it).
  void reopen();

 private:
  void open();

  std::string destination_;
  AccessLogFormat format_;
  int fd_ = -1;
  bool owns_fd_ = false;
  bool regular_file_ = false;  // else a pipe or terminal: atomic only up to PIPE_BUF
  std::string buffer_;
};

}  // namespace hipache::log
