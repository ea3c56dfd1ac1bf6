#include "hipache/router.hpp"

#include <gtest/gtest.h>

namespace hipache {
namespace {

using Candidates = std::vector<std::string>;

TEST(NormalizeHost, DropsPortLowercasesAndOneTrailingDot) {
  EXPECT_EQ(normalize_host("Example.COM:8080"), "example.com");
  EXPECT_EQ(normalize_host("example.com."), "example.com");
  EXPECT_EQ(normalize_host("example.com.."), "example.com.");
  EXPECT_EQ(normalize_host("example.com.:80"), "example.com");
  EXPECT_EQ(normalize_host("localhost"), "localhost");
}

TEST(NormalizeHost, KeepsIpv6LiteralAndDropsItsPort) {
  EXPECT_EQ(normalize_host("[::1]:8080"), "[::1]");
  EXPECT_EQ(normalize_host("[FE80::1]"), "[fe80::1]");
}

TEST(NormalizeHost, EmptyStaysEmpty) {
  EXPECT_EQ(normalize_host(""), "");
  EXPECT_EQ(normalize_host(":80"), "");
}

TEST(HostCandidates, SpecExampleTriesFiveWildcardLevelsThenStar) {
  EXPECT_EQ(
      host_candidates("a.b.c.d.e.f.g"),
      (Candidates{"a.b.c.d.e.f.g", "*.c.d.e.f.g", "*.d.e.f.g", "*.e.f.g", "*.f.g", "*.g", "*"}));
}

TEST(HostCandidates, OnlySuffixesShorterThanTheHost) {
  EXPECT_EQ(host_candidates("www.example.com"),
            (Candidates{"www.example.com", "*.example.com", "*.com", "*"}));
  EXPECT_EQ(host_candidates("example.com"), (Candidates{"example.com", "*.com", "*"}));
  EXPECT_EQ(host_candidates("localhost"), (Candidates{"localhost", "*"}));
}

TEST(HostCandidates, StarIsNotRepeated) {
  EXPECT_EQ(host_candidates("*"), (Candidates{"*"}));
}

}  // namespace
}  // namespace hipache
