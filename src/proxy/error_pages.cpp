#include "proxy/error_pages.hpp"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace hipache::proxy {

namespace {

constexpr int kKnownStatuses[] = {400, 404, 414, 431, 500, 502, 503, 504};

std::optional<std::string> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

const char* status_title(int status) {
  switch (status) {
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 414:
      return "URI Too Long";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Error";
  }
}

const char* status_explanation(int status) {
  switch (status) {
    case 400:
      return "This address is not served here, or the request could not be understood.";
    case 414:
      return "The requested address is too long.";
    case 431:
      return "The request headers are too large.";
    case 502:
      return "The application behind this address is not answering right now.";
    case 503:
      return "The service is temporarily unavailable. Please try again shortly.";
    case 504:
      return "The application behind this address took too long to answer.";
    default:
      return "Something went wrong while handling this request.";
  }
}

std::string builtin_page(int status) {
  const std::string code = std::to_string(status);
  return "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + code + " " +
         status_title(status) +
         "</title>\n<style>body{font-family:sans-serif;margin:4em auto;max-width:40em;color:#333}"
         "h1{font-weight:normal}</style></head>\n<body><h1>" +
         code + " " + status_title(status) + "</h1>\n<p>" + status_explanation(status) +
         "</p></body></html>\n";
}

}  // namespace

ErrorPages::ErrorPages(const std::optional<std::string>& static_dir) {
  if (!static_dir) return;
  const std::filesystem::path dir(*static_dir);
  for (const int status : kKnownStatuses) {
    if (auto page = read_file(dir / ("error_" + std::to_string(status) + ".html"))) {
      pages_.emplace(status, std::move(*page));
    }
  }
  custom_default_ = read_file(dir / "error_default.html");
  if (pages_.empty() && !custom_default_) {
    spdlog::warn(
        "staticDir {}: no error_<code>.html or error_default.html found; "
        "using built-in pages",
        *static_dir);
  }
}

const std::string& ErrorPages::body(int status) const {
  if (const auto it = pages_.find(status); it != pages_.end()) return it->second;
  if (custom_default_) return *custom_default_;
  auto it = builtin_.find(status);
  if (it == builtin_.end()) it = builtin_.emplace(status, builtin_page(status)).first;
  return it->second;
}

}  // namespace hipache::proxy
