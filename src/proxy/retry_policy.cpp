#include "proxy/retry_policy.hpp"

namespace hipache::proxy {

RetryDecision decide_retry(const AttemptFailure& attempt, const RetryBudget& budget) {
  const auto failure = classify(attempt.failure);
  const bool health_failure =
      failure.marks_backend_dead && !attempt.reused_connection && !attempt.health_unknown;
  // Part of the answer is with the client already: nothing sane is left to tell it.
  if (attempt.response_started) return {NextStep::close_client, health_failure};
  const bool replayable =
      !budget.body_consumed && (!attempt.request_sent || budget.replayable_after_send);
  if (attempt.reused_connection && replayable && !budget.fresh_retry_used) {
    return {NextStep::retry_on_fresh_connection, false};
  }
  // A reused connection that cannot be replayed failed for real.
  const bool mark_dead = health_failure || attempt.reused_connection;
  if (!failure.backend_retryable || !replayable || budget.retries_left == 0) {
    return {NextStep::error_page, mark_dead};
  }
  return {NextStep::retry_elsewhere, mark_dead};
}

bool is_idempotent(boost::beast::http::verb method) {
  using boost::beast::http::verb;
  switch (method) {
    case verb::get:
    case verb::head:
    case verb::put:
    case verb::delete_:
    case verb::options:
    case verb::trace:
      return true;
    default:
      return false;
  }
}

}  // namespace hipache::proxy
