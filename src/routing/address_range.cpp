#include "hipache/address_range.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace hipache {

namespace {

struct Address {
  std::array<std::uint8_t, 16> bytes{};
  bool v4 = false;
};

std::optional<Address> parse_address(std::string_view text) {
  const std::string copy(text);
  Address a;
  if (inet_pton(AF_INET, copy.c_str(), a.bytes.data()) == 1) {
    a.v4 = true;
    return a;
  }
  if (inet_pton(AF_INET6, copy.c_str(), a.bytes.data()) != 1) return std::nullopt;
  // ::ffff:a.b.c.d is an IPv4 client seen through a dual-stack socket.
  static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(a.bytes.data(), kMapped, sizeof kMapped) == 0) {
    std::memmove(a.bytes.data(), a.bytes.data() + 12, 4);
    std::memset(a.bytes.data() + 4, 0, 12);
    a.v4 = true;
  }
  return a;
}

bool prefix_equal(const std::array<std::uint8_t, 16>& a, const std::array<std::uint8_t, 16>& b,
                  unsigned bits) {
  const unsigned whole = bits / 8;
  if (std::memcmp(a.data(), b.data(), whole) != 0) return false;
  const unsigned rest = bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

}  // namespace

std::optional<AddressRange> parse_address_range(std::string_view text) {
  const auto slash = text.find('/');
  const auto address = parse_address(text.substr(0, slash));
  if (!address) return std::nullopt;
  AddressRange range;
  range.text = std::string(text);
  range.bytes = address->bytes;
  range.v4 = address->v4;
  const unsigned max_bits = range.v4 ? 32 : 128;
  range.prefix_bits = max_bits;
  if (slash != std::string_view::npos) {
    const auto bits = text.substr(slash + 1);
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(bits.data(), bits.data() + bits.size(), value);
    if (bits.empty() || ec != std::errc() || end != bits.data() + bits.size() || value > max_bits) {
      return std::nullopt;
    }
    range.prefix_bits = value;
  }
  return range;
}

bool address_in_ranges(std::string_view text, const std::vector<AddressRange>& ranges) {
  const auto address = parse_address(text);
  if (!address) return false;
  for (const auto& range : ranges) {
    if (range.v4 == address->v4 && prefix_equal(range.bytes, address->bytes, range.prefix_bits)) {
      return true;
    }
  }
  return false;
}

}  // namespace hipache
