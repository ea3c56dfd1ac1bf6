// The lock decisions of the active health checker (health/check_lock.hpp): which values in the
// `hchecker` hash are ours, someone else's, or free to take, for our values and hchecker's.
#include <gtest/gtest.h>

#include "health/check_lock.hpp"

namespace hipache::health {
namespace {

constexpr std::int64_t kNow = 1'800'000'000;

TEST(CheckLock, ValuesNameTheOwnerAndTheExpiry) {
  const auto owner = lock_owner("node-a", 4242);
  EXPECT_EQ(owner, "hipache:node-a#4242");
  EXPECT_EQ(lock_value(owner, kNow + 20), "hipache:node-a#4242;1800000020");
}

TEST(CheckLock, NobodyAndUs) {
  const auto owner = lock_owner("node-a", 1);
  EXPECT_EQ(judge_lock("", owner, kNow), LockHolder::nobody);
  EXPECT_EQ(judge_lock(lock_value(owner, kNow + 20), owner, kNow), LockHolder::us);
  // Ours even when expired: nobody else took it, renewing it is safe.
  EXPECT_EQ(judge_lock(lock_value(owner, kNow - 20), owner, kNow), LockHolder::us);
}

TEST(CheckLock, AnotherCheckerHoldsItUntilItExpires) {
  const auto mine = lock_owner("node-a", 1);
  const auto theirs = lock_owner("node-b", 1);
  EXPECT_EQ(judge_lock(lock_value(theirs, kNow + 1), mine, kNow), LockHolder::other);
  EXPECT_EQ(judge_lock(lock_value(theirs, kNow), mine, kNow), LockHolder::stale);
  EXPECT_EQ(judge_lock(lock_value(theirs, kNow - 100), mine, kNow), LockHolder::stale);
  // Same host, other process: someone else.
  EXPECT_EQ(judge_lock(lock_value(lock_owner("node-a", 2), kNow + 5), mine, kNow),
            LockHolder::other);
}

TEST(CheckLock, HcheckerLocksHoldAnHourFromWhenTaken) {
  const auto mine = lock_owner("node-a", 1);
  EXPECT_EQ(judge_lock("box#123;1800000000.123456789", mine, kNow), LockHolder::other);
  EXPECT_EQ(judge_lock("box#123;1799996401.5", mine, kNow), LockHolder::other);
  EXPECT_EQ(judge_lock("box#123;1799996400.5", mine, kNow), LockHolder::stale);
}

TEST(CheckLock, UnreadableOrAbsurdValuesAreFree) {
  const auto mine = lock_owner("node-a", 1);
  // hchecker writes "1" for an instant before its signature: taking it then is undone when
  // hchecker overwrites it (our next renewal sees the lock lost).
  EXPECT_EQ(judge_lock("1", mine, kNow), LockHolder::stale);
  EXPECT_EQ(judge_lock("x;y", mine, kNow), LockHolder::stale);
  EXPECT_EQ(judge_lock("x;", mine, kNow), LockHolder::stale);
  EXPECT_EQ(judge_lock("x;-5", mine, kNow), LockHolder::stale);
  EXPECT_EQ(judge_lock("x;99999999999999999999999", mine, kNow), LockHolder::stale);
  // A lock that claims to hold for years would block a backend forever.
  EXPECT_EQ(judge_lock(lock_value(lock_owner("b", 1), kNow + 10 * 86400), mine, kNow),
            LockHolder::stale);
  EXPECT_EQ(judge_lock("box#1;" + std::to_string(kNow + 10 * 86400), mine, kNow),
            LockHolder::stale);
}

TEST(CheckLock, SwapCommandIsOneEvalOnTheField) {
  const auto command = swap_command("p:hchecker", "http://b:1", "old", "new");
  ASSERT_EQ(command.size(), 7u);
  EXPECT_EQ(command[0], "EVAL");
  EXPECT_EQ(command[2], "1");
  EXPECT_EQ(command[3], "p:hchecker");
  EXPECT_EQ(command[4], "http://b:1");
  EXPECT_EQ(command[5], "old");
  EXPECT_EQ(command[6], "new");
}

}  // namespace
}  // namespace hipache::health
