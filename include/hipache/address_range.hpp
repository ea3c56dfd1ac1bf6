// IP addresses and CIDR ranges ("10.0.0.0/8", "::1", "2001:db8::/32") for server.trustProxies.
// Pure: parsing with inet_pton, matching on bytes; IPv4-mapped IPv6 clients match IPv4 ranges.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hipache {

struct AddressRange {
  std::string text;  // as configured
  std::array<std::uint8_t, 16> bytes{};  // IPv4 stored in the first 4 bytes
  unsigned prefix_bits = 0;
  bool v4 = false;
};

// nullopt when `text` is neither an address nor address/prefix.
std::optional<AddressRange> parse_address_range(std::string_view text);

// Whether the address `text` (IPv4, IPv6, or "::ffff:a.b.c.d") falls in any of `ranges`.
bool address_in_ranges(std::string_view text, const std::vector<AddressRange>& ranges);

}  // namespace hipache
