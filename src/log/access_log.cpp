#include "log/access_log.hpp"

#include <fcntl.h>
#include <limits.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "log/log_text.hpp"

namespace hipache::log {

namespace {

constexpr std::size_t kFlushThreshold = 32 * 1024;
constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// Header values are attacker-controlled: keep one record per line and the quoting intact. A
// field outside quotes (the remote address) has its spaces escaped too, or a client could add
// fields of its own to the line.
enum class Quoting { quoted, bare };

void append_escaped_field(std::string& out, std::string_view value, Quoting quoting) {
  for (const char c : value) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f ||
               (c == ' ' && quoting == Quoting::bare)) {
      out += "\\x";
      constexpr const char* kHex = "0123456789abcdef";
      out += kHex[(static_cast<unsigned char>(c) >> 4) & 0xf];
      out += kHex[static_cast<unsigned char>(c) & 0xf];
    } else {
      out += c;
    }
  }
}

}  // namespace

void format_access_line(const AccessLogEntry& e, std::string& out) {
  out += remote_prefix(e.remote);
  append_escaped_field(out, e.remote, Quoting::bare);
  out += " - - [";
  const std::tm tm = utc_time(e.when);
  append_two_digits(out, tm.tm_mday);
  out += '/';
  out += kMonths[tm.tm_mon];
  out += '/';
  append_number(out, static_cast<std::uint64_t>(tm.tm_year + 1900));
  out += ':';
  append_clock(out, tm);
  out += " +0000] \"";
  append_escaped_field(out, e.method, Quoting::quoted);
  out += ' ';
  append_escaped_field(out, e.target, Quoting::quoted);
  out += ' ';
  append_escaped_field(out, e.protocol, Quoting::quoted);
  out += "\" ";
  append_number(out, e.status);
  out += ' ';
  append_number(out, e.bytes_sent);
  out += " \"";
  append_escaped_field(out, e.referer, Quoting::quoted);
  out += "\" \"";
  append_escaped_field(out, e.user_agent, Quoting::quoted);
  out += "\" \"";
  append_escaped_field(out, e.identifier, Quoting::quoted);
  out += "\" ";
  append_seconds(out, e.total);
  out += ' ';
  append_seconds(out, e.backend);
  out += '\n';
}

std::string_view protocol_name(unsigned version) {
  switch (version) {
    case 10:
      return "HTTP/1.0";
    case 20:
      return "HTTP/2.0";
    default:
      return "HTTP/1.1";
  }
}

AccessLog::AccessLog(std::string destination, AccessLogFormat format)
    : destination_(std::move(destination)), format_(format) {
  open();
}

AccessLog::~AccessLog() {
  flush();
  if (owns_fd_) ::close(fd_);
}

void AccessLog::open() {
  if (destination_.empty()) return;
  if (destination_ == "-" || destination_ == "stdout") {
    fd_ = STDOUT_FILENO;
    owns_fd_ = false;
    struct stat info {};
    regular_file_ = ::fstat(fd_, &info) == 0 && S_ISREG(info.st_mode);
    return;
  }
  fd_ = ::open(destination_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  owns_fd_ = fd_ >= 0;
  struct stat info {};
  regular_file_ = fd_ >= 0 && ::fstat(fd_, &info) == 0 && S_ISREG(info.st_mode);
  if (fd_ < 0) {
    spdlog::error("access log {}: cannot open: {}", destination_, std::strerror(errno));
  }
}

void AccessLog::write(const AccessLogEntry& entry) {
  if (!enabled()) return;
  if (format_ == AccessLogFormat::json) {
    format_access_json(entry, buffer_);
  } else {
    format_access_line(entry, buffer_);
  }
  if (buffer_.size() >= kFlushThreshold) flush();
}

void AccessLog::flush() {
  if (buffer_.empty() || fd_ < 0) {
    buffer_.clear();
    return;
  }
  // Only whole lines per write, so concurrent writers never split a line: O_APPEND makes a
  // file write atomic; a pipe only up to PIPE_BUF bytes, so there writes are cut at line ends.
  std::size_t done = 0;
  while (done < buffer_.size()) {
    std::size_t length = buffer_.size() - done;
    if (!regular_file_ && length > PIPE_BUF) {
      const auto cut = buffer_.rfind('\n', done + PIPE_BUF - 1);
      length = cut != std::string::npos && cut >= done ? cut + 1 - done : PIPE_BUF;
    }
    const auto n = ::write(fd_, buffer_.data() + done, length);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      spdlog::error("access log {}: write failed: {}", destination_, std::strerror(errno));
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  buffer_.clear();
}

void AccessLog::reopen() {
  flush();
  if (owns_fd_) ::close(fd_);
  fd_ = -1;
  open();
  spdlog::info("access log reopened");
}

}  // namespace hipache::log
