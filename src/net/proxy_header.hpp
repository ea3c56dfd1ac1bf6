// The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2) that an L4 balancer
// sends before a connection's first byte, telling the client's address. Pure: bytes in, result
// out; the socket side is net/proxy_header_read.hpp.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace hipache::net {

// Version 1 is one text line: "PROXY TCP4 1.2.3.4 5.6.7.8 1234 80\r\n", at most 107 bytes.
constexpr std::size_t kProxyV1MaxLength = 107;
// Version 2 may announce up to 16 + 65535 bytes; more than this (TLVs of a few hundred bytes
// at most in practice) is refused rather than buffered for every connection.
constexpr std::size_t kProxyV2MaxLength = 4096;
constexpr std::size_t kProxyHeaderMaxLength = kProxyV2MaxLength;

// A client's IP address as 16 bytes, IPv4 mapped into IPv6 (::ffff:a.b.c.d).
struct ProxiedAddress {
  std::array<std::uint8_t, 16> bytes{};
  friend bool operator==(const ProxiedAddress&, const ProxiedAddress&) = default;
};

// The address as the access log and X-Forwarded-For write a client: IPv4 as "::ffff:1.2.3.4"
// (as Hipache did), IPv6 as inet_ntop writes it.
std::string client_text(const ProxiedAddress& address);

enum class ProxyHeaderStatus {
  complete,   // `length` bytes are the header
  need_more,  // every byte given is part of a header still incomplete
  invalid,    // not a PROXY header (or one this proxy refuses): `error` says why
};

struct ProxyHeader {
  ProxyHeaderStatus status = ProxyHeaderStatus::need_more;
  std::size_t length = 0;  // complete only
  // The source address of a proxied TCP connection; nullopt when the header says to keep the
  // connection's own peer (v1 UNKNOWN, v2 LOCAL, UNSPEC or UNIX family).
  std::optional<ProxiedAddress> client;
  int version = 0;              // 1 or 2, once known
  std::string_view error = {};  // invalid only; a static string
};

// Parses the start of a connection's bytes. Reads no byte past input.size(), and none past the
// header once it is complete.
ProxyHeader parse_proxy_header(std::span<const std::uint8_t> input);

}  // namespace hipache::net
