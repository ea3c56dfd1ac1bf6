#include "routing/lru_route_cache.hpp"

#include <gtest/gtest.h>

namespace hipache::routing {
namespace {

using namespace std::chrono_literals;

RouteLookup found(const std::string& identifier) {
  RouteLookup lookup;
  lookup.status = RouteLookup::Status::found;
  lookup.route.identifier = identifier;
  return lookup;
}

TEST(LruRouteCache, HitWithinTtlMissAfter) {
  LruRouteCache cache(10, 5000ms);
  const auto t0 = LruRouteCache::Clock::time_point{} + 1h;
  cache.insert("a.test", found("a"), t0);
  ASSERT_NE(cache.find("a.test", t0 + 4999ms), nullptr);
  EXPECT_EQ(cache.find("a.test", t0 + 4999ms)->route.identifier, "a");
  EXPECT_EQ(cache.find("a.test", t0 + 5000ms), nullptr);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(LruRouteCache, EvictsLeastRecentlyUsed) {
  LruRouteCache cache(2, 60000ms);
  const auto t0 = LruRouteCache::Clock::time_point{} + 1h;
  cache.insert("a", found("a"), t0);
  cache.insert("b", found("b"), t0);
  ASSERT_NE(cache.find("a", t0), nullptr);  // a is now the most recent
  cache.insert("c", found("c"), t0);
  EXPECT_NE(cache.find("a", t0), nullptr);
  EXPECT_EQ(cache.find("b", t0), nullptr);
  EXPECT_NE(cache.find("c", t0), nullptr);
  EXPECT_EQ(cache.size(), 2u);
}

TEST(LruRouteCache, InsertReplacesAndEraseForgets) {
  LruRouteCache cache(4, 60000ms);
  const auto t0 = LruRouteCache::Clock::time_point{} + 1h;
  cache.insert("a", found("old"), t0);
  cache.insert("a", found("new"), t0);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.find("a", t0)->route.identifier, "new");
  cache.erase("a");
  EXPECT_EQ(cache.find("a", t0), nullptr);
}

}  // namespace
}  // namespace hipache::routing
