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
constexpr std::size_t kNoByteBound = SIZE_MAX;

RouteLookup with_backends(std::size_t count, const std::string& url) {
  auto route = std::make_shared<Route>();
  route->identifier = "big";
  for (std::size_t i = 0; i < count; ++i) route->backends.push_back(parse_backend_url(url));
  RouteLookup lookup;
  lookup.status = RouteLookup::Status::found;
  lookup.route = std::move(route);
  return lookup;
}

std::string numbered(const char* prefix, std::size_t i) {
  std::string name(prefix);
  name.append(std::to_string(i));
  return name;
}

TEST(RouteCache, KeepsExpiryAndGenerationPerEntry) {
  RouteCache cache(10, kNoByteBound);
  cache.insert("a.test", found("a"), kT0 + 5s, 7);
  const auto* entry = cache.find("a.test");
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->lookup.route->identifier, "a");
  EXPECT_EQ(entry->expires, kT0 + 5s);
  EXPECT_EQ(entry->generation, 7u);
  EXPECT_EQ(cache.find("b.test"), nullptr);
}

TEST(RouteCache, EvictsLeastRecentlyUsed) {
  RouteCache cache(2, kNoByteBound);
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
  RouteCache cache(kCapacity, kNoByteBound);
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
  RouteCache cache(4, kNoByteBound);
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
  RouteCache cache(100000, kNoByteBound);
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
  RouteCache cache(0, kNoByteBound);
  cache.insert("a", found("a"), kT0, 0);
  EXPECT_EQ(cache.find("a"), nullptr);
}

TEST(RouteCache, EstimateCountsHostNameBackendStringsAndBackendList) {
  const auto small = RouteCache::estimated_bytes("a.test", found("a"));
  const std::string long_host(255, 'h');
  EXPECT_GE(RouteCache::estimated_bytes(long_host, found("a")), small + 255);
  const std::string long_url = "http://" + std::string(1000, 'b') + ":8080/";
  // The URL, and the host and pool key parsed from it: three strings of ~1000 bytes.
  EXPECT_GE(RouteCache::estimated_bytes("a.test", with_backends(1, long_url)), small + 3000);
  const auto huge = RouteCache::estimated_bytes("a.test", with_backends(10000, "http://b:1"));
  EXPECT_GE(huge, 10000 * sizeof(Backend));
  RouteLookup unknown;  // not_found: no route
  EXPECT_LT(RouteCache::estimated_bytes("a.test", unknown), small);
}

TEST(RouteCache, EvictsLeastRecentlyUsedUntilTheBytesFit) {
  const auto entry = RouteCache::estimated_bytes("a", found("a"));  // names of one letter
  RouteCache cache(1000, 3 * entry);
  cache.insert("a", found("a"), kT0, 0);
  cache.insert("b", found("b"), kT0, 0);
  cache.insert("c", found("c"), kT0, 0);
  EXPECT_EQ(cache.bytes(), 3 * entry);
  // Far below the count bound, the byte bound decides, and hits still count as use.
  ASSERT_NE(cache.find("a"), nullptr);
  cache.insert("d", found("d"), kT0, 0);
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(cache.find("b"), nullptr);
  EXPECT_NE(cache.find("a"), nullptr);
  EXPECT_NE(cache.find("c"), nullptr);
  EXPECT_NE(cache.find("d"), nullptr);
  EXPECT_EQ(cache.bytes(), 3 * entry);

  // A large entry pushes out as many as it needs, oldest first.
  const std::string big_host(entry / 2, 'x');
  const auto big = RouteCache::estimated_bytes(big_host, found("x"));
  ASSERT_LE(big, 3 * entry);
  cache.insert(big_host, found("x"), kT0, 0);
  EXPECT_LE(cache.bytes(), 3 * entry);
  EXPECT_NE(cache.find(big_host), nullptr);
  EXPECT_EQ(cache.size(), 1 + (3 * entry - big) / entry);
  EXPECT_NE(cache.find("d"), nullptr);  // the most recent of the others
}

TEST(RouteCache, TheCountBoundHoldsWhenTheBytesWouldFit) {
  RouteCache cache(3, kNoByteBound);
  for (std::size_t i = 0; i < 10; ++i) cache.insert(numbered("h", i), found("x"), kT0, 0);
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(cache.bytes(), 3 * RouteCache::estimated_bytes("h7", found("x")));
  EXPECT_EQ(cache.find("h6"), nullptr);
  EXPECT_NE(cache.find("h7"), nullptr);
}

TEST(RouteCache, AnEntryLargerThanTheWholeBudgetIsNotKept) {
  const auto entry = RouteCache::estimated_bytes("a", found("a"));
  RouteCache cache(1000, 4 * entry);
  cache.insert("a", found("a"), kT0, 0);
  cache.insert("h", found("old"), kT0, 0);
  const auto huge = with_backends(100, "http://b:1");
  ASSERT_GT(RouteCache::estimated_bytes("h", huge), 4 * entry);
  cache.insert("h", huge, kT0, 0);
  // Not kept, nothing else evicted for it; the outdated entry for that host is gone.
  EXPECT_EQ(cache.find("h"), nullptr);
  EXPECT_NE(cache.find("a"), nullptr);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.bytes(), entry);
}

TEST(RouteCache, BytesFollowReplaceEraseAndClear) {
  RouteCache cache(10, kNoByteBound);
  const auto small = RouteCache::estimated_bytes("h", found("x"));
  const auto big = RouteCache::estimated_bytes("h", with_backends(20, "http://b:1"));
  cache.insert("h", found("x"), kT0, 0);
  cache.insert("h", with_backends(20, "http://b:1"), kT0, 0);
  EXPECT_EQ(cache.bytes(), big);
  cache.insert("i", found("x"), kT0, 0);
  EXPECT_EQ(cache.bytes(), big + small);
  cache.erase("h");
  EXPECT_EQ(cache.bytes(), small);
  cache.clear();
  EXPECT_EQ(cache.bytes(), 0u);
}

}  // namespace
}  // namespace hipache::routing
