// CachingRouteStore against a fake source: which lookups are answered from memory and which
// read, across invalidations, link changes, outages, concurrent misses and local dead marks.
#include "store/caching_route_store.hpp"

#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>
#include <map>
#include <thread>
#include <utility>
#include <vector>

namespace hipache::store {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using Status = RouteLookup::Status;
using Key = InvalidationSink::Key;

// Routes from a map; reads counted, and held at a gate while `hold` is set.
class FakeSource final : public RouteSource {
 public:
  explicit FakeSource(asio::io_context& io) : gate_(io, asio::steady_timer::time_point::max()) {}

  asio::awaitable<RouteLookup> read(const std::string& host) override {
    ++reads;
    if (hold) co_await gate_.async_wait(asio::as_tuple(asio::use_awaitable));
    RouteLookup lookup;
    if (down) {
      lookup.status = Status::unavailable;
    } else if (const auto it = routes.find(host); it != routes.end()) {
      lookup.status = Status::found;
      lookup.route = std::make_shared<Route>(it->second);
    }
    co_return lookup;
  }
  bool invalidation_pending() override { return pending; }
  void set_sink(InvalidationSink* sink) override { this->sink = sink; }

  void release() {
    hold = false;
    gate_.cancel();
  }

  std::map<std::string, Route> routes;
  int reads = 0;
  bool hold = false;
  bool down = false;
  bool pending = false;
  InvalidationSink* sink = nullptr;

 private:
  asio::steady_timer gate_;
};

class FakeHealth final : public BackendHealth {
 public:
  void mark_dead(const std::string& host, const Route& route, std::size_t index) override {
    if (can_mark_dead(route, index)) marks.emplace_back(host, index);
  }
  bool passive_checks_enabled() const override { return passive; }

  std::vector<std::pair<std::string, std::size_t>> marks;
  bool passive = true;
};

Route route_of(std::size_t backends) {
  Route route;
  route.identifier = "site";
  for (std::size_t i = 0; i < backends; ++i) {
    route.backends.push_back(parse_backend_url("http://127.0.0.1:" + std::to_string(9000 + i)));
  }
  return route;
}

class CachingRouteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    source_->routes["www.example.com"] = route_of(2);
    source_->routes["one.example.com"] = route_of(1);
  }

  void make_store(const RouteCacheSettings& settings = {}) {
    store_.emplace(source_, health_, settings);
  }

  // Starts a lookup; its answer lands in the returned slot once the loop has run it.
  std::shared_ptr<std::optional<RouteLookup>> start_lookup(const std::string& host) {
    auto slot = std::make_shared<std::optional<RouteLookup>>();
    // lookup() keeps a reference to its host, as the exchange's own string outlives it.
    const auto& kept = hosts_.emplace_back(host);
    asio::co_spawn(io_, store_->lookup(kept), [slot](std::exception_ptr error, RouteLookup r) {
      if (error) std::rethrow_exception(error);
      *slot = std::move(r);
    });
    return slot;
  }

  void run() {
    io_.restart();
    io_.poll();
  }

  RouteLookup lookup(const std::string& host) {
    auto slot = start_lookup(host);
    run();
    EXPECT_TRUE(slot->has_value()) << host;
    return slot->value_or(RouteLookup{});
  }

  bool cached(const std::string& host) { return store_->cached(host).has_value(); }

  asio::io_context io_;
  std::shared_ptr<FakeSource> source_ = std::make_shared<FakeSource>(io_);
  FakeHealth health_;
  std::optional<CachingRouteStore> store_;
  std::deque<std::string> hosts_;
};

TEST_F(CachingRouteStoreTest, LiveEntryAnswersUntilItsKeyIsInvalidated) {
  make_store();
  source_->sink->link_up();
  EXPECT_EQ(lookup("www.example.com").status, Status::found);
  EXPECT_TRUE(cached("www.example.com"));
  EXPECT_EQ(lookup("www.example.com").status, Status::found);
  EXPECT_EQ(source_->reads, 1);

  source_->sink->invalidated(Key::frontend, "other.example.com");
  EXPECT_TRUE(cached("www.example.com"));
  source_->sink->invalidated(Key::frontend, "www.example.com");
  EXPECT_FALSE(cached("www.example.com"));
  lookup("www.example.com");
  EXPECT_EQ(source_->reads, 2);

  source_->sink->invalidated(Key::dead, "www.example.com");
  EXPECT_FALSE(cached("www.example.com"));
}

TEST_F(CachingRouteStoreTest, WithoutALinkEveryLookupReads) {
  make_store();
  lookup("www.example.com");
  lookup("www.example.com");
  EXPECT_FALSE(cached("www.example.com"));
  EXPECT_EQ(source_->reads, 2);
}

TEST_F(CachingRouteStoreTest, EntriesFromBeforeALinkLossNeverAnswerAgain) {
  make_store();
  source_->sink->link_up();
  lookup("www.example.com");
  source_->sink->link_lost();
  EXPECT_FALSE(cached("www.example.com"));
  source_->sink->link_up();  // a new link: it did not see what changed in between
  EXPECT_FALSE(cached("www.example.com"));
  lookup("www.example.com");
  EXPECT_TRUE(cached("www.example.com"));
}

TEST_F(CachingRouteStoreTest, OutageServesWhatIsHeldAndUnavailableOtherwise) {
  make_store();
  source_->sink->link_up();
  lookup("www.example.com");
  source_->sink->link_lost();
  source_->down = true;
  const auto stale = lookup("www.example.com");
  EXPECT_EQ(stale.status, Status::found);
  EXPECT_EQ(stale.route->identifier, "site");
  EXPECT_EQ(lookup("new.example.com").status, Status::unavailable);
  // An unavailable answer is not cached: the next lookup reads again.
  source_->down = false;
  source_->routes["new.example.com"] = route_of(2);
  source_->sink->link_up();
  EXPECT_EQ(lookup("new.example.com").status, Status::found);
}

// The first request after start-up may be read before tracking is set up; an outage right
// after must still serve it (a Sentinel failover in CI found the 503).
TEST_F(CachingRouteStoreTest, ReadsNoLinkVouchedForAreALastResortOnly) {
  make_store();
  lookup("www.example.com");
  EXPECT_FALSE(cached("www.example.com"));
  source_->sink->link_up();
  EXPECT_FALSE(cached("www.example.com"));
  source_->sink->link_lost();
  source_->down = true;
  const auto held = lookup("www.example.com");
  EXPECT_EQ(held.status, Status::found);
  EXPECT_EQ(source_->reads, 2);
  // A newer read that says "no such host" replaces the held route.
  source_->down = false;
  source_->routes.clear();
  EXPECT_EQ(lookup("www.example.com").status, Status::not_found);
  source_->down = true;
  EXPECT_EQ(lookup("www.example.com").status, Status::not_found);
}

// Without the live route cache (routeCache: false) Redis is read on every request and an
// outage is a 503, as in Hipache: nothing is held.
TEST_F(CachingRouteStoreTest, WithoutTheLiveCacheNothingIsHeldForAnOutage) {
  RouteCacheSettings settings;
  settings.live = false;
  make_store(settings);
  EXPECT_EQ(lookup("www.example.com").status, Status::found);
  source_->down = true;
  EXPECT_EQ(lookup("www.example.com").status, Status::unavailable);
}

TEST_F(CachingRouteStoreTest, UnknownHostsAreCachedAndAWildcardForgetsEverything) {
  make_store();
  source_->sink->link_up();
  EXPECT_EQ(lookup("nobody.example.org").status, Status::not_found);
  EXPECT_EQ(store_->cached("nobody.example.org")->status, Status::not_found);
  lookup("www.example.com");
  // A dead set concerns a known route only.
  source_->sink->invalidated(Key::dead, "nobody.example.org");
  EXPECT_TRUE(cached("nobody.example.org"));
  source_->sink->invalidated(Key::frontend, "*.example.org");
  EXPECT_FALSE(cached("nobody.example.org"));
  EXPECT_FALSE(cached("www.example.com"));

  lookup("www.example.com");
  source_->sink->invalidated(Key::frontend, "*");
  EXPECT_FALSE(cached("www.example.com"));
  lookup("www.example.com");
  source_->sink->invalidated_all();
  EXPECT_FALSE(cached("www.example.com"));
  EXPECT_EQ(store_->size(), 0U);
}

TEST_F(CachingRouteStoreTest, APendingInvalidationMakesTheLookupRead) {
  make_store();
  source_->sink->link_up();
  lookup("www.example.com");
  source_->pending = true;
  EXPECT_FALSE(cached("www.example.com"));
  lookup("www.example.com");
  EXPECT_EQ(source_->reads, 2);
}

TEST_F(CachingRouteStoreTest, ConcurrentMissesShareOneRead) {
  make_store();
  source_->sink->link_up();
  source_->hold = true;
  auto first = start_lookup("www.example.com");
  auto second = start_lookup("www.example.com");
  run();
  EXPECT_EQ(source_->reads, 1);
  EXPECT_FALSE(first->has_value());
  source_->release();
  run();
  ASSERT_TRUE(first->has_value() && second->has_value());
  EXPECT_EQ((*first)->status, Status::found);
  EXPECT_EQ((*second)->status, Status::found);
  EXPECT_EQ(source_->reads, 1);
}

TEST_F(CachingRouteStoreTest, AReadOvertakenByAnInvalidationIsNeitherJoinedNorKept) {
  make_store();
  source_->sink->link_up();
  source_->hold = true;
  auto first = start_lookup("www.example.com");
  run();
  source_->sink->invalidated(Key::frontend, "www.example.com");
  source_->release();
  run();
  ASSERT_TRUE(first->has_value());
  EXPECT_FALSE(cached("www.example.com"));

  // A request after the invalidation does not wait for a read that started before it.
  source_->hold = true;
  auto before = start_lookup("www.example.com");
  run();
  source_->pending = true;
  auto after = start_lookup("www.example.com");
  run();
  EXPECT_EQ(source_->reads, 3);
  source_->release();
  run();
  EXPECT_TRUE(before->has_value() && after->has_value());
}

TEST_F(CachingRouteStoreTest, OwnDeadMarksApplyAtOnceToACopy) {
  make_store();
  source_->sink->link_up();
  const auto clean = lookup("www.example.com");
  store_->mark_dead("www.example.com", *clean.route, 1);
  ASSERT_EQ(health_.marks.size(), 1U);
  EXPECT_EQ(health_.marks[0], std::make_pair(std::string("www.example.com"), std::size_t{1}));

  const auto marked = store_->cached("www.example.com");
  ASSERT_TRUE(marked.has_value());
  EXPECT_TRUE(marked->route->backends[1].dead);
  EXPECT_FALSE(marked->route->backends[0].dead);
  EXPECT_FALSE(clean.route->backends[1].dead);  // the cached route itself is shared, unchanged
  EXPECT_EQ(source_->reads, 1);
}

TEST_F(CachingRouteStoreTest, MarksAreNotAppliedLocallyWhileAnExternalCheckerRuns) {
  make_store();
  source_->sink->link_up();
  health_.passive = false;
  EXPECT_FALSE(store_->passive_checks_enabled());
  const auto clean = lookup("www.example.com");
  store_->mark_dead("www.example.com", *clean.route, 1);
  EXPECT_EQ(health_.marks.size(), 1U);  // still announced
  EXPECT_FALSE(store_->cached("www.example.com")->route->backends[1].dead);
}

TEST_F(CachingRouteStoreTest, ASingleBackendOrAnIndexOutOfRangeIsNeverMarked) {
  make_store();
  source_->sink->link_up();
  const auto single = lookup("one.example.com");
  store_->mark_dead("one.example.com", *single.route, 0);
  const auto pair = lookup("www.example.com");
  store_->mark_dead("www.example.com", *pair.route, 2);
  EXPECT_TRUE(health_.marks.empty());
  EXPECT_FALSE(store_->cached("one.example.com")->route->backends[0].dead);
}

TEST_F(CachingRouteStoreTest, LruModeAnswersUntilTheTtlWithoutALink) {
  RouteCacheSettings settings;
  settings.lru_ttl = 50ms;
  make_store(settings);
  lookup("www.example.com");
  EXPECT_TRUE(cached("www.example.com"));
  EXPECT_EQ(source_->reads, 1);
  std::this_thread::sleep_for(80ms);
  EXPECT_FALSE(cached("www.example.com"));
}

TEST_F(CachingRouteStoreTest, TheSourceIsDetachedWhenTheStoreGoes) {
  make_store();
  EXPECT_NE(source_->sink, nullptr);
  store_.reset();
  EXPECT_EQ(source_->sink, nullptr);
}

}  // namespace
}  // namespace hipache::store
