#include "hipache/errors.hpp"

#include <gtest/gtest.h>

namespace hipache {
namespace {

TEST(Classify, StatusesFollowTheSpec) {
  EXPECT_EQ(classify(Failure::frontend_not_found).status, 400);
  EXPECT_EQ(classify(Failure::missing_host).status, 400);
  EXPECT_EQ(classify(Failure::bad_request).status, 400);
  EXPECT_EQ(classify(Failure::headers_too_large).status, 431);
  EXPECT_EQ(classify(Failure::no_live_backend).status, 502);
  EXPECT_EQ(classify(Failure::bad_backend_url).status, 502);
  EXPECT_EQ(classify(Failure::backend_refused).status, 502);
  EXPECT_EQ(classify(Failure::backend_reset).status, 502);
  EXPECT_EQ(classify(Failure::backend_timeout).status, 504);
  EXPECT_EQ(classify(Failure::store_unavailable).status, 503);
}

TEST(Classify, OnlyBackendFailuresBeforeAResponseMarkDeadAndRetry) {
  for (const auto f : {Failure::backend_refused, Failure::backend_reset, Failure::backend_timeout,
                       Failure::backend_bad_response, Failure::backend_tls_failed}) {
    EXPECT_TRUE(classify(f).marks_backend_dead);
    EXPECT_NE(classify(f).retry, RetryKind::none);
  }
  // Only a close can be a pooled connection gone stale; a timeout or garbage is the backend's.
  EXPECT_EQ(classify(Failure::backend_reset).retry, RetryKind::fresh_if_reused);
  EXPECT_EQ(classify(Failure::backend_timeout).retry, RetryKind::elsewhere);
  EXPECT_EQ(classify(Failure::backend_bad_response).retry, RetryKind::elsewhere);
  // A backend that stopped reading an upload: says nothing about its health.
  EXPECT_FALSE(classify(Failure::backend_stopped_reading).marks_backend_dead);
  for (const auto f : {Failure::bad_request, Failure::frontend_not_found, Failure::no_live_backend,
                       Failure::store_unavailable, Failure::backend_broken_body,
                       Failure::pool_exhausted, Failure::upgrade_to_http2_backend}) {
    EXPECT_FALSE(classify(f).marks_backend_dead);
    EXPECT_EQ(classify(f).retry, RetryKind::none);
  }
}

TEST(StatusMarksDead, FollowsPassiveCheckRules) {
  EXPECT_FALSE(status_marks_dead(200, false, true));
  EXPECT_FALSE(status_marks_dead(404, false, true));
  EXPECT_TRUE(status_marks_dead(500, false, true));
  EXPECT_FALSE(status_marks_dead(500, false, false));
  EXPECT_TRUE(status_marks_dead(501, false, false));
  EXPECT_TRUE(status_marks_dead(502, false, true));
  EXPECT_TRUE(status_marks_dead(503, false, true));
  EXPECT_FALSE(status_marks_dead(503, true, true));  // maintenance announced by Retry-After
  EXPECT_TRUE(status_marks_dead(599, false, true));
  EXPECT_FALSE(status_marks_dead(600, false, true));
}

}  // namespace
}  // namespace hipache
