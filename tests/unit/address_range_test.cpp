#include "hipache/address_range.hpp"

#include <gtest/gtest.h>

namespace hipache {
namespace {

std::vector<AddressRange> ranges(std::initializer_list<const char*> texts) {
  std::vector<AddressRange> out;
  for (const char* t : texts) out.push_back(*parse_address_range(t));
  return out;
}

TEST(AddressRange, ParsesAddressesAndCidrs) {
  EXPECT_TRUE(parse_address_range("10.0.0.1"));
  EXPECT_TRUE(parse_address_range("10.0.0.0/8"));
  EXPECT_TRUE(parse_address_range("::1"));
  EXPECT_TRUE(parse_address_range("2001:db8::/32"));
  for (const char* bad : {"", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/x", "host",
                          "10.0.0.256", "10.0.0.0/8/8"}) {
    EXPECT_FALSE(parse_address_range(bad)) << bad;
  }
}

TEST(AddressRange, MatchesByPrefix) {
  const auto trusted = ranges({"10.0.0.0/8", "192.168.1.7", "2001:db8::/32"});
  EXPECT_TRUE(address_in_ranges("10.200.3.4", trusted));
  EXPECT_TRUE(address_in_ranges("192.168.1.7", trusted));
  EXPECT_FALSE(address_in_ranges("192.168.1.8", trusted));
  EXPECT_FALSE(address_in_ranges("11.0.0.1", trusted));
  EXPECT_TRUE(address_in_ranges("2001:db8:1::5", trusted));
  EXPECT_FALSE(address_in_ranges("2001:db9::5", trusted));
  EXPECT_FALSE(address_in_ranges("not an address", trusted));
}

TEST(AddressRange, Ipv4MappedClientsMatchIpv4Ranges) {
  const auto trusted = ranges({"127.0.0.0/8"});
  EXPECT_TRUE(address_in_ranges("::ffff:127.0.0.1", trusted));
  EXPECT_FALSE(address_in_ranges("::1", trusted));
}

TEST(AddressRange, OddPrefixLengths) {
  const auto trusted = ranges({"172.16.0.0/12"});
  EXPECT_TRUE(address_in_ranges("172.31.255.255", trusted));
  EXPECT_FALSE(address_in_ranges("172.32.0.0", trusted));
}

}  // namespace
}  // namespace hipache
