#include "net/proxy_header.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

namespace hipache::net {

namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
constexpr std::array<std::uint8_t, 12> kV2Signature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                       0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr std::size_t kV2FixedLength = 16;  // signature, version/command, family, length
constexpr std::uint8_t kV2Local = 0x0;
constexpr std::uint8_t kV2Proxy = 0x1;
constexpr std::uint8_t kFamilyInet = 0x1;
constexpr std::uint8_t kFamilyInet6 = 0x2;
constexpr std::uint8_t kFamilyUnix = 0x3;
constexpr std::uint8_t kProtocolStream = 0x1;
constexpr std::uint8_t kProtocolDgram = 0x2;
constexpr std::size_t kInetBlock = 12;   // source, destination addresses and ports
constexpr std::size_t kInet6Block = 36;  // the same, IPv6
constexpr std::size_t kTlvHeader = 3;    // type, 16-bit length

ProxyHeader invalid(int version, std::string_view error) {
  return {ProxyHeaderStatus::invalid, 0, std::nullopt, version, error};
}

ProxiedAddress mapped_v4(const std::uint8_t* v4) {
  ProxiedAddress address;
  address.bytes[10] = 0xff;
  address.bytes[11] = 0xff;
  std::memcpy(address.bytes.data() + 12, v4, 4);
  return address;
}

// A decimal port, 0-65535, without sign or leading zeros.
bool valid_port(std::string_view text) {
  if (text.empty() || text.size() > 5 || (text.size() > 1 && text[0] == '0')) return false;
  unsigned value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  return value <= 65535;
}

std::optional<ProxiedAddress> parse_ip(std::string_view text, bool v6) {
  // inet_pton wants a terminated string; an address is short (the line is at most 107 bytes).
  if (text.size() >= INET6_ADDRSTRLEN || text.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  std::array<char, INET6_ADDRSTRLEN> terminated{};
  std::copy(text.begin(), text.end(), terminated.begin());
  if (v6) {
    ProxiedAddress address;
    if (::inet_pton(AF_INET6, terminated.data(), address.bytes.data()) != 1) return std::nullopt;
    return address;
  }
  std::array<std::uint8_t, 4> v4{};
  if (::inet_pton(AF_INET, terminated.data(), v4.data()) != 1) return std::nullopt;
  return mapped_v4(v4.data());
}

// "TCP4 <src> <dst> <sport> <dport>", "TCP6 ...", or "UNKNOWN" and anything: the line after
// "PROXY ", without its CRLF.
ProxyHeader parse_v1_fields(std::string_view fields, std::size_t length) {
  if (fields == "UNKNOWN" || fields.starts_with("UNKNOWN ")) {
    return {ProxyHeaderStatus::complete, length, std::nullopt, 1};
  }
  std::array<std::string_view, 5> parts;
  std::size_t count = 0;
  bool ended = false;  // the last field ran to the end of the line
  while (count < parts.size() && !ended) {
    const std::size_t space = fields.find(' ');
    parts[count++] = fields.substr(0, space);
    ended = space == std::string_view::npos;
    if (!ended) fields.remove_prefix(space + 1);
  }
  if (count != parts.size() || !ended) return invalid(1, "v1: wrong number of fields");
  for (const auto part : parts) {
    if (part.empty()) return invalid(1, "v1: empty field");
  }
  const bool v6 = parts[0] == "TCP6";
  if (!v6 && parts[0] != "TCP4") return invalid(1, "v1: unknown protocol");
  const auto source = parse_ip(parts[1], v6);
  if (!source || !parse_ip(parts[2], v6)) return invalid(1, "v1: bad address");
  if (!valid_port(parts[3]) || !valid_port(parts[4])) return invalid(1, "v1: bad port");
  return {ProxyHeaderStatus::complete, length, source, 1};
}

ProxyHeader parse_v1(std::span<const std::uint8_t> input) {
  const std::string_view text(reinterpret_cast<const char*>(input.data()), input.size());
  const std::size_t prefix = std::min(text.size(), kV1Prefix.size());
  if (text.substr(0, prefix) != kV1Prefix.substr(0, prefix)) {
    return invalid(0, "not a PROXY header");
  }
  const std::string_view window = text.substr(0, std::min(text.size(), kProxyV1MaxLength));
  const std::size_t newline = window.find('\n');
  if (newline == std::string_view::npos) {
    if (text.size() >= kProxyV1MaxLength) return invalid(1, "v1: longer than 107 bytes");
    return {ProxyHeaderStatus::need_more, 0, std::nullopt, 1};
  }
  if (newline < kV1Prefix.size() || window[newline - 1] != '\r') {
    return invalid(1, "v1: line not ended by CRLF");
  }
  const std::string_view fields = window.substr(kV1Prefix.size(), newline - 1 - kV1Prefix.size());
  return parse_v1_fields(fields, newline + 1);
}

// TLVs (type, length, value) fill the rest of the header exactly; their contents are not used.
bool valid_tlvs(std::span<const std::uint8_t> tlvs) {
  while (!tlvs.empty()) {
    if (tlvs.size() < kTlvHeader) return false;
    const std::size_t length = (std::size_t{tlvs[1]} << 8) | tlvs[2];
    if (tlvs.size() - kTlvHeader < length) return false;
    tlvs = tlvs.subspan(kTlvHeader + length);
  }
  return true;
}

ProxyHeader parse_v2(std::span<const std::uint8_t> input) {
  const std::size_t signature = std::min(input.size(), kV2Signature.size());
  if (!std::equal(input.begin(), input.begin() + static_cast<std::ptrdiff_t>(signature),
                  kV2Signature.begin())) {
    return invalid(0, "not a PROXY header");
  }
  // Each fixed byte is checked as soon as it is there: garbage fails before the whole header.
  if (input.size() > 12) {
    const std::uint8_t version = input[12] >> 4;
    const std::uint8_t command = input[12] & 0x0f;
    if (version != 2) return invalid(2, "v2: unsupported version");
    if (command != kV2Local && command != kV2Proxy) return invalid(2, "v2: unknown command");
  }
  if (input.size() > 13) {
    const std::uint8_t family = input[13] >> 4;
    const std::uint8_t protocol = input[13] & 0x0f;
    if (family > kFamilyUnix || protocol > kProtocolDgram) {
      return invalid(2, "v2: unknown family or protocol");
    }
  }
  if (input.size() < kV2FixedLength) return {ProxyHeaderStatus::need_more, 0, std::nullopt, 2};
  const std::size_t length = kV2FixedLength + ((std::size_t{input[14]} << 8) | input[15]);
  if (length > kProxyV2MaxLength) return invalid(2, "v2: header too long");
  if (input.size() < length) return {ProxyHeaderStatus::need_more, 0, std::nullopt, 2};

  const auto body = input.subspan(kV2FixedLength, length - kV2FixedLength);
  const ProxyHeader keep_peer{ProxyHeaderStatus::complete, length, std::nullopt, 2};
  // LOCAL: the balancer's own connection (a health check); the addresses mean nothing.
  if ((input[12] & 0x0f) == kV2Local) return keep_peer;
  const std::uint8_t family = input[13] >> 4;
  const std::uint8_t protocol = input[13] & 0x0f;
  // UNSPEC, UNIX or datagrams: no TCP client address to take; the socket's peer stays.
  if ((family != kFamilyInet && family != kFamilyInet6) || protocol != kProtocolStream) {
    return keep_peer;
  }
  const std::size_t block = family == kFamilyInet ? kInetBlock : kInet6Block;
  if (body.size() < block) return invalid(2, "v2: address block too short");
  if (!valid_tlvs(body.subspan(block))) return invalid(2, "v2: malformed TLV");
  ProxiedAddress client;
  if (family == kFamilyInet) {
    client = mapped_v4(body.data());
  } else {
    std::copy_n(body.begin(), client.bytes.size(), client.bytes.begin());
  }
  return {ProxyHeaderStatus::complete, length, client, 2};
}

}  // namespace

std::string client_text(const ProxiedAddress& address) {
  std::array<char, INET6_ADDRSTRLEN> text{};
  static constexpr std::array<std::uint8_t, 12> kMappedPrefix = {0, 0, 0, 0, 0,    0,
                                                                 0, 0, 0, 0, 0xff, 0xff};
  if (std::equal(kMappedPrefix.begin(), kMappedPrefix.end(), address.bytes.begin())) {
    ::inet_ntop(AF_INET, address.bytes.data() + 12, text.data(), text.size());
    return "::ffff:" + std::string(text.data());
  }
  ::inet_ntop(AF_INET6, address.bytes.data(), text.data(), text.size());
  return text.data();
}

ProxyHeader parse_proxy_header(std::span<const std::uint8_t> input) {
  if (input.empty()) return {};
  if (input[0] == kV1Prefix[0]) return parse_v1(input);
  if (input[0] == kV2Signature[0]) return parse_v2(input);
  return invalid(0, "not a PROXY header");
}

}  // namespace hipache::net
