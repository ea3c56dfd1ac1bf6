#include "routing/route_cache.hpp"

#include <gtest/gtest.h>

namespace hipache::routing {
namespace {

using namespace std::chrono_literals;

RouteLookup found(const std::string& identifier) {
  RouteLookup lookup;
  lookup.status = RouteLookup::Status::found;
  auto route = std::make_shared<Route>();
  route->identifier = identifier;
  lookup.route = std::move(route);
  return lookup;
}

const auto kT0 = RouteCache::Clock::time_point{} + 1h;

TEST(RouteCache, KeepsExpiryAndGenerationPerEntry) {
  RouteCache cache(10);
  cache.insert("a.test", found("a"), kT0 + 5s, 7);
  const auto* entry = cache.find("a.test");
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->lookup.route->identifier, "a");
  EXPECT_EQ(entry->expires, kT0 + 5s);
  EXPECT_EQ(entry->generation, 7u);
  EXPECT_EQ(cache.find("b.test"), nullptr);
}

TEST(RouteCache, EvictsLeastRecentlyUsed) {
  RouteCache cache(2);
  cache.insert("a", found("a"), kT0, 0);
  cache.insert("b", found("b"), kT0, 0);
  ASSERT_NE(cache.find("a"), nullptr);  // a is now the most recent
  cache.insert("c", found("c"), kT0, 0);
  EXPECT_NE(cache.find("a"), nullptr);
  EXPECT_EQ(cache.find("b"), nullptr);
  EXPECT_NE(cache.find("c"), nullptr);
  EXPECT_EQ(cache.size(), 2u);
}

TEST(RouteCache, InsertReplacesEraseAndClearForget) {
  RouteCache cache(4);
  cache.insert("a", found("old"), kT0, 1);
  cache.insert("a", found("new"), kT0, 2);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.find("a")->lookup.route->identifier, "new");
  cache.erase("a");
  EXPECT_EQ(cache.find("a"), nullptr);
  cache.insert("b", found("b"), kT0, 1);
  cache.insert("c", found("c"), kT0, 1);
  cache.clear();
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.find("b"), nullptr);
}

TEST(RouteCache, ZeroCapacityStoresNothing) {
  RouteCache cache(0);
  cache.insert("a", found("a"), kT0, 0);
  EXPECT_EQ(cache.find("a"), nullptr);
}

}  // namespace
}  // namespace hipache::routing
