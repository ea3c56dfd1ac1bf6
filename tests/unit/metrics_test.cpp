// The shared metrics table (slots, the fold of a retired worker, frontends) and the Prometheus
// text format it is shown in.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <regex>
#include <sstream>
#include <string>

#include "metrics/admin.hpp"
#include "metrics/exposition.hpp"
#include "metrics/record.hpp"
#include "metrics/table.hpp"

namespace hipache::metrics {
namespace {

using namespace std::chrono_literals;

// name{labels} -> value, for every sample line; also checks each sample's family has a HELP and
// TYPE line before it.
std::map<std::string, std::string> samples(const std::string& text) {
  std::map<std::string, std::string> out;
  std::map<std::string, std::string> types;
  std::stringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("# TYPE ")) {
      const auto rest = line.substr(7);
      types[rest.substr(0, rest.find(' '))] = rest.substr(rest.find(' ') + 1);
      continue;
    }
    if (line.starts_with("#")) continue;
    const auto space = line.rfind(' ');
    const auto key = line.substr(0, space);
    auto family = key.substr(0, key.find('{'));
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (family.ends_with(suffix) &&
          types.contains(family.substr(0, family.size() - std::string(suffix).size()))) {
        family.resize(family.size() - std::string(suffix).size());
      }
    }
    EXPECT_TRUE(types.contains(family)) << "no # TYPE before " << line;
    out[key] = line.substr(space + 1);
  }
  return out;
}

TEST(MetricsTable, CountsOfAWorkerSurviveItsRetirement) {
  MetricsTable table;
  auto* slot = table.reserve();
  ASSERT_NE(slot, nullptr);
  table.assign(slot, 4242);
  slot->record_request(200, 3000, 1000);
  slot->record_request(200, 30000, 20000);
  slot->record_request(502, 2'000'000, 0);
  slot->counters[static_cast<std::size_t>(Counter::retries)].add(2);
  slot->gauges[static_cast<std::size_t>(Gauge::rss_bytes)].store(1 << 20);

  auto before = table.snapshot(0);
  EXPECT_EQ(before.requests[200 - kFirstCode + 1], 2u);
  EXPECT_EQ(before.requests[502 - kFirstCode + 1], 1u);
  ASSERT_EQ(before.workers.size(), 1u);
  EXPECT_EQ(before.workers[0].pid, 4242);
  EXPECT_EQ(before.workers[0].requests, 3u);
  EXPECT_EQ(before.gauges[static_cast<std::size_t>(Gauge::rss_bytes)], 1 << 20);

  table.retire(4242);
  auto after = table.snapshot(0);
  EXPECT_EQ(after.requests, before.requests);
  EXPECT_EQ(after.request_duration, before.request_duration);
  EXPECT_EQ(after.request_duration_sum_us, 2'033'000u);
  EXPECT_EQ(after.counters, before.counters);
  EXPECT_TRUE(after.workers.empty());
  EXPECT_EQ(after.gauges[static_cast<std::size_t>(Gauge::rss_bytes)], 0) << "gauges go with it";

  // The freed slot starts from zero for the next worker; the totals do not move.
  auto* next = table.reserve();
  ASSERT_EQ(next, slot);
  table.assign(next, 4243);
  next->record_request(404, 10, 0);
  EXPECT_EQ(table.snapshot(0).total_requests(), 4u);
}

TEST(MetricsTable, AllSlotsTakenMeansNoSlotNotACrash) {
  MetricsTable table;
  for (std::size_t i = 0; i < MetricsTable::kSlots; ++i) ASSERT_NE(table.reserve(), nullptr);
  EXPECT_EQ(table.reserve(), nullptr);
}

TEST(MetricsTable, AForkedChildCountsInTheSameTable) {
  MetricsTable table;
  auto* slot = table.reserve();
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    attach(slot, false);
    for (int i = 0; i < 10; ++i) request_done(201, 1ms, 0ms, "");
    add(Counter::dead_marks);
    ::_exit(0);
  }
  table.assign(slot, pid);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  table.retire(pid);
  const auto snapshot = table.snapshot(0);
  EXPECT_EQ(snapshot.requests[201 - kFirstCode + 1], kEnabled ? 10u : 0u);
  EXPECT_EQ(snapshot.counters[static_cast<std::size_t>(Counter::dead_marks)], kEnabled ? 1u : 0u);
}

TEST(MetricsTable, TheBusiestFrontendsAcrossWorkers) {
  MetricsTable table;
  auto* a = table.reserve();
  auto* b = table.reserve();
  table.assign(a, 1);
  table.assign(b, 2);
  for (int i = 0; i < 5; ++i) a->record_frontend("one.example", false);
  for (int i = 0; i < 4; ++i) b->record_frontend("one.example", i == 0);
  for (int i = 0; i < 7; ++i) b->record_frontend("two.example", false);
  a->record_frontend("three.example", true);
  auto snapshot = table.snapshot(2);
  ASSERT_EQ(snapshot.frontends.size(), 2u);
  EXPECT_EQ(snapshot.frontends[0].name, "one.example");
  EXPECT_EQ(snapshot.frontends[0].requests, 9u);
  EXPECT_EQ(snapshot.frontends[0].server_errors, 1u);
  EXPECT_EQ(snapshot.frontends[1].name, "two.example");
  EXPECT_EQ(snapshot.frontends[1].requests, 7u);
  EXPECT_TRUE(table.snapshot(0).frontends.empty());
  table.retire(2);  // folded, still counted
  snapshot = table.snapshot(3);
  EXPECT_EQ(snapshot.frontends[0].requests, 9u);
}

TEST(MetricsTable, AFullFrontendTableGivesWayAndStaysBounded) {
  MetricsTable table;
  auto* slot = table.reserve();
  table.assign(slot, 1);
  for (int i = 0; i < 100; ++i) slot->record_frontend("busy.example", false);
  for (int i = 0; i < 10'000; ++i) slot->record_frontend("host" + std::to_string(i), false);
  const auto snapshot = table.snapshot(kFrontendEntries);
  EXPECT_EQ(snapshot.frontends.size(), kFrontendEntries);
  EXPECT_EQ(snapshot.frontends[0].name, "busy.example");
  EXPECT_EQ(snapshot.frontends[0].requests, 100u);
  // A name longer than an entry holds is cut, not overflowed.
  slot->record_frontend(std::string(200, 'x'), false);
  EXPECT_EQ(table.snapshot(kFrontendEntries).frontends.back().name.size() <= kFrontendNameBytes,
            true);
}

TEST(Exposition, HistogramsAreCumulativeWithSumAndCount) {
  Snapshot snapshot;
  snapshot.requests[200 - kFirstCode + 1] = 7;
  snapshot.requests[0] = 1;
  snapshot.request_duration[0] = 3;  // <= 5 ms
  snapshot.request_duration[4] = 4;  // <= 100 ms
  snapshot.request_duration[kBuckets - 1] = 1;
  snapshot.request_duration_sum_us = 12'500'001;
  const auto text = format_prometheus(snapshot);
  const auto s = samples(text);
  EXPECT_EQ(s.at("hipache_requests_total{code=\"200\"}"), "7");
  EXPECT_EQ(s.at("hipache_requests_total{code=\"other\"}"), "1");
  EXPECT_FALSE(s.contains("hipache_requests_total{code=\"404\"}")) << "zero codes are left out";
  EXPECT_EQ(s.at("hipache_request_duration_seconds_bucket{le=\"0.005\"}"), "3");
  EXPECT_EQ(s.at("hipache_request_duration_seconds_bucket{le=\"0.05\"}"), "3");
  EXPECT_EQ(s.at("hipache_request_duration_seconds_bucket{le=\"0.1\"}"), "7");
  EXPECT_EQ(s.at("hipache_request_duration_seconds_bucket{le=\"10\"}"), "7");
  EXPECT_EQ(s.at("hipache_request_duration_seconds_bucket{le=\"+Inf\"}"), "8");
  EXPECT_EQ(s.at("hipache_request_duration_seconds_count"), "8");
  EXPECT_EQ(s.at("hipache_request_duration_seconds_sum"), "12.500001");
  EXPECT_EQ(s.at("hipache_backend_duration_seconds_count"), "0");
  EXPECT_NE(text.find("# TYPE hipache_request_duration_seconds histogram\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE hipache_requests_total counter\n"), std::string::npos);
  EXPECT_EQ(text.back(), '\n');
}

TEST(Exposition, EveryLineIsACommentOrASample) {
  Snapshot snapshot;
  snapshot.workers.push_back({123, 0, 5, {}});
  snapshot.frontends.push_back({"a\"b\\c\nd", 3, 1});
  const auto text = format_prometheus(snapshot);
  const std::regex sample(R"(^[a-z_]+(\{[a-z]+="([^"\\\n]|\\["\\n])*"\})? [0-9.+-]+(e[0-9+-]+)?$)");
  std::stringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) continue;
    EXPECT_TRUE(std::regex_match(line, sample)) << line;
  }
  const auto s = samples(text);
  EXPECT_EQ(s.at("hipache_frontend_requests_total{frontend=\"a\\\"b\\\\c\\nd\"}"), "3");
  EXPECT_EQ(s.at("hipache_worker_resident_memory_bytes{pid=\"123\"}"), "0");
  EXPECT_EQ(s.at("hipache_workers"), "1");
  EXPECT_EQ(s.at("hipache_redis_up"), "0");
}

TEST(Exposition, LabelValuesAreEscaped) {
  EXPECT_EQ(escape_label_value("plain.example"), "plain.example");
  EXPECT_EQ(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
}

TEST(AdminAccess, TokenNeedsTheExactBearerValue) {
  EXPECT_TRUE(authorized("", ""));
  EXPECT_TRUE(authorized("anything", ""));
  EXPECT_TRUE(authorized("Bearer s3cret", "s3cret"));
  EXPECT_FALSE(authorized("", "s3cret"));
  EXPECT_FALSE(authorized("Bearer s3cres", "s3cret"));
  EXPECT_FALSE(authorized("Bearer s3cret ", "s3cret"));
  EXPECT_FALSE(authorized("Basic s3cret", "s3cret"));
  EXPECT_FALSE(authorized("bearer s3cret", "s3cret"));
  EXPECT_FALSE(authorized("Bearer ", "s3cret"));
}

TEST(StatusPage, IsOneDocumentWithoutExternalAssets) {
  const auto page = status_page_html();
  EXPECT_TRUE(page.starts_with("<!DOCTYPE html>"));
  EXPECT_EQ(page.find("src="), std::string_view::npos);
  EXPECT_EQ(page.find("href="), std::string_view::npos);
  EXPECT_EQ(page.find("http://"), std::string_view::npos);
  EXPECT_EQ(page.find("https://"), std::string_view::npos);
  EXPECT_NE(page.find("status.json"), std::string_view::npos);
}

}  // namespace
}  // namespace hipache::metrics
