// Fuzz target: the PROXY protocol header parser (net/proxy_header.hpp) on any bytes. Invariants:
// no read past the input (ASan: libFuzzer's buffer is exactly `size` bytes); a complete header is
// no longer than the input or the version's maximum; a client address reads back as an IPv6
// address with the same bytes; the input cut anywhere parses consistently with the whole (a
// prefix that needs more is a prefix of a longer header, or of bytes that are invalid anyway; a
// complete or invalid prefix gives the same verdict as the whole); the header alone parses as it
// does with bytes after it.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "net/proxy_header.hpp"

namespace {

using hipache::net::ProxyHeader;
using hipache::net::ProxyHeaderStatus;

void check(bool condition) {
  if (!condition) __builtin_trap();
}

bool same(const ProxyHeader& a, const ProxyHeader& b) {
  return a.status == b.status && a.length == b.length && a.client == b.client;
}

// A prefix of `cut` bytes against the whole input's verdict.
void check_prefix(std::span<const std::uint8_t> input, std::size_t cut, const ProxyHeader& whole) {
  // A copy of exactly `cut` bytes, so that reading past the prefix is an ASan report too.
  const std::vector<std::uint8_t> copy(input.begin(), input.begin() + static_cast<long>(cut));
  const ProxyHeader part = hipache::net::parse_proxy_header(copy);
  switch (part.status) {
    case ProxyHeaderStatus::complete:
      check(same(part, whole));
      break;
    case ProxyHeaderStatus::invalid:
      check(whole.status == ProxyHeaderStatus::invalid);
      break;
    case ProxyHeaderStatus::need_more:
      check(whole.status != ProxyHeaderStatus::complete || whole.length > cut);
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);
  const ProxyHeader whole = hipache::net::parse_proxy_header(input);
  if (whole.status == ProxyHeaderStatus::complete) {
    check(whole.length > 0 && whole.length <= size);
    check(whole.length <= hipache::net::kProxyHeaderMaxLength);
    check(whole.version == 2 || whole.length <= hipache::net::kProxyV1MaxLength);
    if (whole.client) {
      const std::string text = hipache::net::client_text(*whole.client);
      in6_addr back{};
      check(::inet_pton(AF_INET6, text.c_str(), &back) == 1);
      check(std::memcmp(&back, whole.client->bytes.data(), sizeof back) == 0);
    }
    check_prefix(input, whole.length, whole);  // the header alone
  } else if (whole.status == ProxyHeaderStatus::invalid) {
    check(!whole.error.empty());
  }
  // Every cut of a short input; a spread of cuts of a long one.
  const std::size_t step = size <= 256 ? 1 : size / 128;
  for (std::size_t cut = 0; cut < size; cut += step) check_prefix(input, cut, whole);
  return 0;
}
