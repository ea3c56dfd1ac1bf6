#include "routing/route_cache.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <unordered_map>

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

std::string numbered(const char* prefix, std::size_t i) {
  std::string name(prefix);
  name.append(std::to_string(i));
  return name;
}

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

TEST(RouteCache, AnOldEntryThatIsHitSurvivesEvictionInALargeCache) {
  // Large enough that recent hits are not reordered (RouteCache::find): old ones still are.
  constexpr std::size_t kCapacity = 100;
  RouteCache cache(kCapacity);
  for (std::size_t i = 0; i < kCapacity; ++i) {
    cache.insert(numbered("h", i), found("x"), kT0, 0);
  }
  ASSERT_NE(cache.find("h0"), nullptr);   // the oldest, now in use again
  ASSERT_NE(cache.find("h99"), nullptr);  // the newest: stays in front without a move
  for (std::size_t i = 0; i < kCapacity / 2; ++i) {
    cache.insert(numbered("n", i), found("x"), kT0, 0);
  }
  EXPECT_NE(cache.find("h0"), nullptr);
  EXPECT_NE(cache.find("h99"), nullptr);
  for (std::size_t i = 1; i <= kCapacity / 2; ++i) {
    EXPECT_EQ(cache.find(numbered("h", i)), nullptr) << "h" << i << " should be evicted";
  }
  EXPECT_EQ(cache.size(), kCapacity);
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

TEST(RouteCache, FindsEveryEntryThroughInsertsAndErasesInAnyOrder) {
  // The index is open addressing with entries moved back on erase: thousands of random
  // operations on few names (long probe runs, wrap-around, growth) against a plain map. Every
  // third name is too long to sit inside its entry.
  const auto name_of = [](std::size_t i) {
    return numbered(i % 3 == 0 ? "a-host-name-longer-than-what-an-entry-holds-inline-" : "host-",
                    i) +
           ".example.com";
  };
  RouteCache cache(100000);
  std::unordered_map<std::string, std::string> model;
  std::mt19937 rng(12345);
  std::uniform_int_distribution<std::size_t> name(0, 299);
  std::uniform_int_distribution<int> action(0, 9);
  for (int step = 0; step < 20000; ++step) {
    const auto host = name_of(name(rng));
    const auto identifier = std::to_string(step);
    const auto what = action(rng);
    if (what < 5) {
      cache.insert(host, found(identifier), kT0, 0);
      model[host] = identifier;
    } else if (what < 8) {
      cache.erase(host);
      model.erase(host);
    } else if (what == 8) {
      const auto* entry = cache.find(host);
      const auto it = model.find(host);
      ASSERT_EQ(entry != nullptr, it != model.end()) << host << " at step " << step;
      if (entry != nullptr) {
        ASSERT_EQ(entry->lookup.route->identifier, it->second);
      }
    } else if (step % 1000 == 9) {
      cache.clear();
      model.clear();
    }
    ASSERT_EQ(cache.size(), model.size());
  }
  for (std::size_t i = 0; i < 300; ++i) {
    const auto host = name_of(i);
    const auto* entry = cache.find(host);
    const auto it = model.find(host);
    ASSERT_EQ(entry != nullptr, it != model.end()) << host;
    if (entry != nullptr) {
      EXPECT_EQ(entry->lookup.route->identifier, it->second);
    }
  }
}

TEST(RouteCache, ZeroCapacityStoresNothing) {
  RouteCache cache(0);
  cache.insert("a", found("a"), kT0, 0);
  EXPECT_EQ(cache.find("a"), nullptr);
}

}  // namespace
}  // namespace hipache::routing
