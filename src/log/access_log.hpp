// The access log in Hipache's line format (SPEC section 8).
//
// Lines are buffered and written with one write(2) per flush on an O_APPEND descriptor, so a
// flush holds only whole lines and lines from several workers never interleave.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace hipache::log {

struct AccessLogEntry {
  std::string_view remote;  // the X-Real-IP value as forwarded
  std::string_view method;
  std::string_view target;
  unsigned version = 11;  // 10, 11 or 20 (HTTP/2)
  unsigned status = 0;
  std::uint64_t bytes_sent = 0;
  std::string_view referer;
  std::string_view user_agent;
  std::string_view identifier;  // "-" when no frontend matched
  std::chrono::milliseconds total{0};
  std::chrono::milliseconds backend{0};
  std::chrono::system_clock::time_point when;
};

// Appends one formatted line (with '\n') to `out`. Pure, for tests.
void format_access_line(const AccessLogEntry& entry, std::string& out);

class AccessLog {
 public:
  // destination: a file path, "-"/"stdout" for standard output, empty for disabled.
  explicit AccessLog(std::string destination);
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
  int fd_ = -1;
  bool owns_fd_ = false;
  bool regular_file_ = false;  // else a pipe or terminal: atomic only up to PIPE_BUF
  std::string buffer_;
};

}  // namespace hipache::log
