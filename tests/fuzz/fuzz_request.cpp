// Fuzz target: an HTTP/1.x request stream as a client would send it. The bytes go through the
// same Beast parser the proxy uses (request_parser<buffer_body>, 64 KB header limit, no body
// limit), arriving in pieces; for every parsed header the Host is normalised and expanded into
// route candidates, and the target goes through the proxy's own absolute-form reading
// (http/target.hpp): what it would forward as Host and target must read back as exactly that.
//
// Input layout: byte 0 picks the piece size (0 = everything at once), the rest is the stream.
// Up to kMaxRequests pipelined requests are parsed, each with a fresh parser (as the proxy does).
#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "hipache/route.hpp"
#include "hipache/router.hpp"
#include "http/ascii.hpp"
#include "http/field_value.hpp"
#include "http/target.hpp"

namespace http = boost::beast::http;

namespace {

constexpr std::uint32_t kHeaderLimit = 64 * 1024;  // as src/http/read.hpp
constexpr int kMaxRequests = 8;

void check(bool condition) {
  if (!condition) __builtin_trap();
}

bool starts_with_scheme(std::string_view target) {
  return hipache::http::starts_with_ignoring_case(target, "http://") ||
         hipache::http::starts_with_ignoring_case(target, "https://");
}

// An absolute-form target becomes a Host and an origin-form target for the backend: both must be
// read by the next hop exactly as we mean them (one request, that target, that Host).
void check_target(std::string_view target) {
  const auto read = hipache::http::read_request_target(target);
  if (read.form != hipache::http::TargetForm::absolute) {
    check(read.host.empty() && read.path.empty());
    check((read.form == hipache::http::TargetForm::other) != starts_with_scheme(target));
    return;
  }
  check(starts_with_scheme(target));
  check(!read.host.empty() && hipache::http::is_field_value(read.host));
  for (const char c : read.host) check(c != ' ' && c != '\t' && c != '@' && c != '/');
  check(!read.path.empty() && read.path.front() == '/');
  for (const char c : read.path) check(c > 0x20 && c != 0x7f && c != '#');
  check(read.host.size() + read.path.size() <= target.size() + 1);
  // The forwarded target is origin-form: never read as absolute-form again.
  check(hipache::http::read_request_target(read.path).form == hipache::http::TargetForm::other);

  const std::string forwarded = "GET " + read.path + " HTTP/1.1\r\nHost: " + read.host + "\r\n\r\n";
  http::request_parser<http::empty_body> parser;
  boost::system::error_code ec;
  const auto used = parser.put(boost::asio::buffer(forwarded), ec);
  check(!ec && used == forwarded.size() && parser.is_done());
  check(parser.get().target() == read.path);
  check(parser.get()[http::field::host] == read.host);
}

void route_header(const http::request<http::buffer_body>& request) {
  const auto host_header = request[http::field::host];
  const std::string host = hipache::normalize_host({host_header.data(), host_header.size()});
  for (const char c : host) check(!(c >= 'A' && c <= 'Z'));  // lowercased
  const auto candidates = hipache::host_candidates(host);
  if (!host.empty()) {
    // The host itself, at most five wildcard suffixes, then "*".
    check(!candidates.empty() && candidates.front() == host);
    check(candidates.size() <= 7);
    for (std::size_t i = 1; i < candidates.size(); ++i) {
      check(candidates[i] == "*" ||
            (candidates[i].rfind("*.", 0) == 0 && candidates[i].size() - 2 < host.size()));
    }
  }
  check_target({request.target().data(), request.target().size()});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t piece = data[0] == 0 ? size : data[0];
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string buffered;  // received but not yet consumed by a parser
  char body[4096];

  for (int request_index = 0; request_index < kMaxRequests; ++request_index) {
    http::request_parser<http::buffer_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(boost::none);
    bool routed = false;
    for (;;) {
      // Consume everything the parser takes from what has arrived so far.
      boost::system::error_code ec;
      for (;;) {
        parser.get().body().data = body;
        parser.get().body().size = sizeof body;
        ec = {};
        const std::size_t used = parser.put(boost::asio::buffer(buffered), ec);
        buffered.erase(0, used);
        if (parser.is_header_done() && !routed) {
          routed = true;
          route_header(parser.get());
        }
        if (ec == http::error::need_buffer) continue;  // body piece taken, buffer given back
        if (ec || parser.is_done() || used == 0) break;
      }
      if (parser.is_done()) break;
      if (ec && ec != http::error::need_more) return 0;  // a parse error: the proxy answers 400
      if (rest.empty()) {
        // The client closed: only a body delimited by the close may end here.
        ec = {};
        parser.put_eof(ec);
        return 0;
      }
      const std::size_t take = piece < rest.size() ? piece : rest.size();
      buffered.append(rest.substr(0, take));
      rest.remove_prefix(take);
    }
    if (buffered.empty() && rest.empty()) return 0;
  }
  return 0;
}
