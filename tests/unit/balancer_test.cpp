#include "hipache/balancer.hpp"

#include <gtest/gtest.h>

namespace hipache {
namespace {

Route route_of(std::size_t count) {
  Route route;
  for (std::size_t i = 0; i < count; ++i) {
    route.backends.push_back(parse_backend_url("http://10.0.0." + std::to_string(i + 1)));
  }
  return route;
}

TEST(PickBackend, NoBackendsGivesNothing) {
  std::mt19937 rng(1);
  EXPECT_FALSE(pick_backend(route_of(0), {}, rng).has_value());
}

TEST(PickBackend, NeverPicksDeadOrExcluded) {
  std::mt19937 rng(7);
  auto route = route_of(4);
  route.backends[0].dead = true;
  route.backends[2].dead = true;
  const std::vector<bool> excluded = {false, true, false, false};
  for (int i = 0; i < 200; ++i) EXPECT_EQ(pick_backend(route, excluded, rng), 3u);
}

TEST(PickBackend, AllDeadGivesNothing) {
  std::mt19937 rng(3);
  auto route = route_of(3);
  for (auto& backend : route.backends) backend.dead = true;
  EXPECT_FALSE(pick_backend(route, {}, rng).has_value());
}

TEST(PickBackend, SpreadsUniformlyOverLiveBackends) {
  std::mt19937 rng(42);
  auto route = route_of(3);
  std::vector<int> hits(3, 0);
  constexpr int kPicks = 30000;
  for (int i = 0; i < kPicks; ++i) ++hits[*pick_backend(route, {}, rng)];
  for (const int h : hits) {
    EXPECT_GT(h, kPicks / 3 - 600);
    EXPECT_LT(h, kPicks / 3 + 600);
  }
}

}  // namespace
}  // namespace hipache
