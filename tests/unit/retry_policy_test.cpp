// The retry and health policy (proxy/retry_policy.hpp), one row per rule of SPEC section 6.
#include <gtest/gtest.h>

#include "proxy/retry_policy.hpp"

namespace hipache::proxy {
namespace {

struct Row {
  const char* rule;
  AttemptFailure attempt;
  RetryBudget budget;
  NextStep next;
  bool mark_dead;
};

AttemptFailure failed(Failure failure, bool sent = false) {
  AttemptFailure attempt;
  attempt.failure = failure;
  attempt.phase = sent ? AttemptPhase::request_sent : AttemptPhase::connecting;
  return attempt;
}

RetryBudget budget(unsigned retries, bool replayable_after_send = false, bool consumed = false) {
  RetryBudget b;
  b.retries_left = retries;
  b.replayable_after_send = replayable_after_send;
  b.body_consumed = consumed;
  return b;
}

TEST(RetryPolicy, RulesOfSpecSection6) {
  auto reused = failed(Failure::backend_reset, true);
  reused.reused_connection = true;
  auto reused_spent = budget(3, true);
  reused_spent.fresh_retry_used = true;
  auto started = failed(Failure::backend_broken_body, true);
  started.phase = AttemptPhase::answer_started;
  auto reset_after_answer_started = failed(Failure::backend_reset, true);
  reset_after_answer_started.phase = AttemptPhase::answer_started;
  auto reused_reset_mid_answer = reset_after_answer_started;
  reused_reset_mid_answer.reused_connection = true;
  auto reused_timeout = failed(Failure::backend_timeout, true);
  reused_timeout.reused_connection = true;
  const auto cut_upload = failed(Failure::backend_stopped_reading, true);
  auto refused_stream = reused;  // an HTTP/2 stream refused on a reused connection
  refused_stream.unprocessed = true;

  const Row rows[] = {
      {"refused before any byte: another backend, and dead", failed(Failure::backend_refused),
       budget(3), NextStep::retry_elsewhere, true},
      {"timeout after sending an idempotent request without body: replayed",
       failed(Failure::backend_timeout, true), budget(3, true), NextStep::retry_elsewhere, true},
      {"reset after sending a POST: not replayed", failed(Failure::backend_reset, true),
       budget(3, false), NextStep::error_page, true},
      {"a body byte consumed: never replayed", failed(Failure::backend_refused),
       budget(3, true, true), NextStep::error_page, true},
      {"no retries left: error page", failed(Failure::backend_refused), budget(0),
       NextStep::error_page, true},
      {"garbage answer: another backend", failed(Failure::backend_bad_response, true),
       budget(1, true), NextStep::retry_elsewhere, true},
      {"a reused connection closed: once on a fresh one, no dead mark", reused, budget(3, true),
       NextStep::retry_on_fresh_connection, false},
      {"a reused connection closed again after the fresh retry was spent: a real failure", reused,
       reused_spent, NextStep::retry_elsewhere, true},
      {"a reused connection that cannot be replayed: dead, error page", reused, budget(3, false),
       NextStep::error_page, true},
      {"a refused HTTP/2 stream, any method: once on a fresh connection, no dead mark",
       refused_stream, budget(3, false), NextStep::retry_on_fresh_connection, false},
      {"a refused HTTP/2 stream whose body is gone: dead, error page", refused_stream,
       budget(3, false, true), NextStep::error_page, true},
      {"the answer has started: close the client, no page", started, budget(3, true),
       NextStep::close_client, false},
      {"reset mid-answer: close, and dead", reset_after_answer_started, budget(3, true),
       NextStep::close_client, true},
      {"reset mid-answer on a reused connection: not stale, close, and dead",
       reused_reset_mid_answer, budget(3, true), NextStep::close_client, true},
      {"a timeout on a reused connection is the backend's own: elsewhere, and dead", reused_timeout,
       budget(3, true), NextStep::retry_elsewhere, true},
      {"a backend that stopped reading an upload and never answered: not dead", cut_upload,
       budget(3), NextStep::error_page, false},
      {"pool exhausted: not retried, not dead", failed(Failure::pool_exhausted), budget(3),
       NextStep::error_page, false},
      {"a client-side refusal of the body (bad chunk): error page",
       failed(Failure::bad_request, true), budget(3), NextStep::error_page, false},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.rule);
    const auto decision = decide_retry(row.attempt, row.budget);
    EXPECT_EQ(decision.next, row.next);
    EXPECT_EQ(decision.mark_dead, row.mark_dead);
  }
}

}  // namespace
}  // namespace hipache::proxy
