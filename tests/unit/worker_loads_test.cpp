#include "process/worker_loads.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <thread>
#include <vector>

namespace hipache::process {
namespace {

using std::chrono::microseconds;

TEST(WorkerLoads, ClaimsDistinctSlotsAndReusesReleasedOnes) {
  WorkerLoads loads;
  std::vector<std::size_t> slots;
  for (std::size_t i = 0; i < WorkerLoads::kSlots; ++i) {
    const auto slot = loads.claim();
    ASSERT_TRUE(slot.has_value());
    slots.push_back(*slot);
  }
  EXPECT_FALSE(loads.claim().has_value()) << "more slots than the table holds";
  loads.release(slots[3]);
  EXPECT_EQ(loads.claim(), std::optional<std::size_t>(slots[3]));
}

TEST(WorkerLoads, OverShareComparesWithTheAverageOfAcceptingWorkers) {
  WorkerLoads loads;
  const auto a = *loads.claim();
  const auto b = *loads.claim();
  loads.publish(a, 10);
  loads.publish(b, 10);
  EXPECT_FALSE(loads.over_share(a));
  loads.publish(a, 13);  // average 11.5, slack 2: 13 is within it
  EXPECT_FALSE(loads.over_share(a));
  loads.publish(a, 16);  // average 13, slack 2
  EXPECT_TRUE(loads.over_share(a));
  EXPECT_FALSE(loads.over_share(b));
  // A draining worker no longer counts: alone, a worker is never over its share.
  loads.publish(b, WorkerLoads::kNotAccepting);
  EXPECT_FALSE(loads.over_share(a));
  // Large counts get a proportional slack (an eighth of the average).
  loads.publish(b, 800);
  loads.publish(a, 890);  // average 845, slack 105
  EXPECT_FALSE(loads.over_share(a));
  loads.publish(a, 1000);  // average 900, slack 112
  EXPECT_FALSE(loads.over_share(a));
  loads.publish(a, 1100);  // average 950, slack 118
  EXPECT_TRUE(loads.over_share(a));
}

TEST(WorkerLoads, AWorkerThatStopsReportingIsLeftOut) {
  WorkerLoads loads;
  const auto busy = *loads.claim();
  const auto silent = *loads.claim();
  loads.publish(silent, 0);
  loads.publish(busy, 10);
  EXPECT_TRUE(loads.over_share(busy));
  std::this_thread::sleep_for(WorkerLoads::kStaleReport + std::chrono::milliseconds(100));
  loads.publish(busy, 10);
  EXPECT_FALSE(loads.over_share(busy)) << "a stuck worker must not hold the others back";
}

TEST(WorkerLoads, ForkedWorkersShareTheTable) {
  WorkerLoads loads;
  const auto parent_slot = *loads.claim();
  const auto child_slot = *loads.claim();
  loads.publish(parent_slot, 10);
  loads.publish(child_slot, 10);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    loads.publish(child_slot, 0);  // seen by the parent through the shared mapping
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_TRUE(loads.over_share(parent_slot));
}

TEST(AcceptTurn, YieldsOnlyWhenOverItsShare) {
  WorkerLoads loads;
  AcceptTurn a(&loads, *loads.claim());
  AcceptTurn b(&loads, *loads.claim());
  b.publish(5);
  EXPECT_EQ(a.before_accept(5), microseconds::zero());
  EXPECT_TRUE(a.may_accept_more(6));
  EXPECT_TRUE(a.may_accept_more(9));    // average 7, slack 2: 9 is within it
  EXPECT_FALSE(a.may_accept_more(10));  // average 7.5
  EXPECT_EQ(a.before_accept(10), AcceptTurn::kYield);
  b.stop_accepting();
  EXPECT_EQ(a.before_accept(10), microseconds::zero());
}

TEST(AcceptTurn, WithoutATableNeverYields) {
  AcceptTurn turn;
  EXPECT_EQ(turn.before_accept(1000), microseconds::zero());
  EXPECT_TRUE(turn.may_accept_more(1000));
}

}  // namespace
}  // namespace hipache::process
