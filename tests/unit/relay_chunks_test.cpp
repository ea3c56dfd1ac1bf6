#include "proxy/relay_chunks.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace hipache::proxy {
namespace {

TEST(RelayChunks, ReusesAReturnedChunk) {
  RelayChunks pool;
  const RelayChunks::Chunk* first = nullptr;
  {
    auto lease = pool.take();
    ASSERT_TRUE(lease);
    first = &*lease;
    EXPECT_EQ(pool.cached(), 0u);
  }
  EXPECT_EQ(pool.cached(), 1u);
  auto again = pool.take();
  EXPECT_EQ(&*again, first);
  EXPECT_EQ(pool.cached(), 0u);
}

TEST(RelayChunks, ConcurrentLeasesAreDistinct) {
  RelayChunks pool;
  auto a = pool.take();
  auto b = pool.take();
  EXPECT_NE(&*a, &*b);
}

TEST(RelayChunks, KeepsAtMostKeepChunksAfterABurst) {
  RelayChunks pool;
  {
    std::vector<RelayChunks::Lease> burst;
    for (std::size_t i = 0; i < RelayChunks::kKeep * 3; ++i) burst.push_back(pool.take());
  }
  EXPECT_EQ(pool.cached(), RelayChunks::kKeep);
}

TEST(RelayChunks, ReleasesOnlyTheChunksNotTakenSinceTheLastRelease) {
  RelayChunks pool;
  {
    std::vector<RelayChunks::Lease> burst;
    for (int i = 0; i < 10; ++i) burst.push_back(pool.take());
  }
  ASSERT_EQ(pool.cached(), 10u);
  pool.release_unused();  // the first call only starts the count: all ten were just used
  EXPECT_EQ(pool.cached(), 10u);
  {
    // A steadier load: three at once, twice.
    std::vector<RelayChunks::Lease> steady;
    for (int i = 0; i < 3; ++i) steady.push_back(pool.take());
    steady.clear();
    for (int i = 0; i < 3; ++i) steady.push_back(pool.take());
  }
  pool.release_unused();  // seven were never taken
  EXPECT_EQ(pool.cached(), 3u);
  pool.release_unused();  // nothing taken in between: all go
  EXPECT_EQ(pool.cached(), 0u);
  auto fresh = pool.take();  // an empty cache still lends
  EXPECT_TRUE(fresh);
}

TEST(RelayChunks, ResetAndMoveReturnExactlyOnce) {
  RelayChunks pool;
  auto lease = pool.take();
  RelayChunks::Lease moved = std::move(lease);
  EXPECT_FALSE(lease);  // NOLINT(bugprone-use-after-move): a moved-from lease is empty
  EXPECT_TRUE(moved);
  moved.reset();
  EXPECT_FALSE(moved);
  EXPECT_EQ(pool.cached(), 1u);
  moved.reset();  // a second reset gives nothing back twice
  EXPECT_EQ(pool.cached(), 1u);
  RelayChunks::Lease assigned = pool.take();
  assigned = pool.take();  // the replaced lease goes back first
  EXPECT_EQ(pool.cached(), 1u);
}

}  // namespace
}  // namespace hipache::proxy
