#include "process/worker_loads.hpp"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <optional>
#include <thread>
#include <vector>

#include "process/cpu_spread.hpp"

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

cpu_set_t cpus(std::initializer_list<int> list) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (const int cpu : list) CPU_SET(cpu, &set);
  return set;
}

// `look()` right after `report()`, as a busy worker looks within 2 ms of its last report. Under
// valgrind on a loaded machine this thread can stall past kBusyFresh between the two, when the
// reports are rightly stale: such an attempt is discarded and made again.
template <class Report, class Look>
std::optional<int> right_after(Report report, Look look) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    const auto start = std::chrono::steady_clock::now();
    report();
    const auto answer = look();
    if (std::chrono::steady_clock::now() - start <
        WorkerLoads::kBusyFresh - std::chrono::milliseconds(1)) {
      return answer;
    }
  }
  ADD_FAILURE() << "never looked within " << WorkerLoads::kBusyFresh.count() << " ms of a report";
  return std::nullopt;
}

TEST(WorkerLoads, OfTwoBusyWorkersOnOneCpuTheHigherSlotMovesToAFreeOne) {
  WorkerLoads loads;
  const auto a = *loads.claim();
  const auto b = *loads.claim();
  const auto both_on_0 = [&] {
    loads.publish_busy_cpu(a, 0);
    loads.publish_busy_cpu(b, 0);
  };
  EXPECT_EQ(right_after(both_on_0,
                        [&] {
                          return loads.cpu_to_move_to(b, 0, cpus({0, 1}));
                        }),
            std::optional<int>(1));
  EXPECT_EQ(right_after(both_on_0,
                        [&] {
                          return loads.cpu_to_move_to(a, 0, cpus({0, 1}));
                        }),
            std::nullopt)
      << "both would move";
  EXPECT_EQ(right_after(both_on_0, [&] { return loads.cpu_to_move_to(b, 0, cpus({0})); }),
            std::nullopt)
      << "nowhere to go";
  const auto apart = [&] {
    loads.publish_busy_cpu(a, 1);
    loads.publish_busy_cpu(b, 0);
  };
  EXPECT_EQ(right_after(apart,
                        [&] {
                          return loads.cpu_to_move_to(b, 0, cpus({0, 1}));
                        }),
            std::nullopt)
      << "not shared";
}

TEST(WorkerLoads, AMovingWorkerAvoidsCpusWithABusyWorkerAndLooksPastItsOwnFirst) {
  WorkerLoads loads;
  const auto a = *loads.claim();
  const auto b = *loads.claim();
  const auto c = *loads.claim();
  const auto report = [&] {
    loads.publish_busy_cpu(a, 2);
    loads.publish_busy_cpu(b, 3);
    loads.publish_busy_cpu(c, 2);
  };
  EXPECT_EQ(right_after(report,
                        [&] {
                          return loads.cpu_to_move_to(c, 2, cpus({0, 1, 2, 3}));
                        }),
            std::optional<int>(0));
  EXPECT_EQ(right_after(report,
                        [&] {
                          return loads.cpu_to_move_to(c, 2, cpus({1, 2, 3}));
                        }),
            std::optional<int>(1));
  EXPECT_EQ(right_after(report,
                        [&] {
                          return loads.cpu_to_move_to(c, 2, cpus({2, 3}));
                        }),
            std::nullopt);
}

TEST(WorkerLoads, OnlyRecentBusyReportsCountAndAReleasedSlotHasNone) {
  WorkerLoads loads;
  const auto a = *loads.claim();
  const auto b = *loads.claim();
  loads.publish_busy_cpu(a, 0);
  std::this_thread::sleep_for(WorkerLoads::kBusyFresh + std::chrono::milliseconds(5));
  EXPECT_EQ(loads.cpu_to_move_to(b, 0, cpus({0, 1})), std::nullopt) << "a is no longer busy";
  EXPECT_EQ(right_after([&] { loads.publish_busy_cpu(a, 0); },
                        [&] {
                          return loads.cpu_to_move_to(b, 0, cpus({0, 1}));
                        }),
            std::optional<int>(1));
  loads.release(a);
  EXPECT_EQ(loads.cpu_to_move_to(b, 0, cpus({0, 1})), std::nullopt) << "a is gone";
}

// Spins until this thread has run for `how_long`: busy by CpuSpread's measure unless the machine
// kept it waiting for nine times as long meanwhile.
void burn(std::chrono::milliseconds how_long) {
  const auto cpu_time = [] {
    timespec now{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec);
  };
  const auto until = cpu_time() + how_long;
  while (cpu_time() < until) {
  }
}

cpu_set_t own_affinity() {
  cpu_set_t set;
  EXPECT_EQ(::sched_getaffinity(0, sizeof(set), &set), 0);
  return set;
}

TEST(CpuSpread, LooksRarelyWhileIdleAndOftenWhileBusy) {
  WorkerLoads loads;
  CpuSpread spread(loads, *loads.claim());
  EXPECT_EQ(spread.look(), CpuSpread::kIdleLookInterval) << "nothing measured yet";
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(spread.look(), CpuSpread::kIdleLookInterval) << "asleep the whole time";
  // A crowded machine may keep the thread waiting through one burn; not through twenty.
  bool busy = false;
  for (int round = 0; round < 20 && !busy; ++round) {
    burn(std::chrono::milliseconds(3));
    busy = spread.look() == CpuSpread::kBusyLookInterval;
  }
  EXPECT_TRUE(busy);
}

TEST(CpuSpread, MovesOffACpuWhereABusyWorkerWithALowerSlotRunsThenFloatsAgain) {
  const cpu_set_t allowed = own_affinity();
  WorkerLoads loads;
  const auto other = *loads.claim();
  CpuSpread spread(loads, *loads.claim());
  spread.look();
  // The thread may migrate between reading its CPU and the look: then that round is retried.
  CpuSpread::Clock::time_point look_started;
  CpuSpread::Clock::time_point look_ended;
  for (int round = 0; round < 50 && spread.moves() == 0; ++round) {
    loads.publish_busy_cpu(other, ::sched_getcpu());
    burn(std::chrono::milliseconds(3));
    look_started = CpuSpread::Clock::now();
    spread.look();
    look_ended = CpuSpread::Clock::now();
  }
  const cpu_set_t after = own_affinity();
  EXPECT_TRUE(CPU_EQUAL(&after, &allowed)) << "still bound to the CPU it moved to";
  if (CPU_COUNT(&allowed) < 2) {
    EXPECT_EQ(spread.moves(), 0U) << "one CPU: nowhere to move";
    return;
  }
  ASSERT_EQ(spread.moves(), 1U);
  // After a move the worker waits kFirstPause before the next one, even if shared again.
  EXPECT_GE(spread.next_move_allowed(), look_started + CpuSpread::kFirstPause);
  EXPECT_LE(spread.next_move_allowed(), look_ended + CpuSpread::kFirstPause);
  // A look at once counts as busy (the thread ran all the while) and must not move it. Under
  // valgrind even this can take longer than the pause; the bounds above still hold there.
  const auto pause_ends = spread.next_move_allowed();
  loads.publish_busy_cpu(other, ::sched_getcpu());
  spread.look();
  if (CpuSpread::Clock::now() < pause_ends) {
    EXPECT_EQ(spread.moves(), 1U) << "moved again within the pause";
  }
}

}  // namespace
}  // namespace hipache::process
