#include "proxy/retry_policy.hpp"

namespace hipache::proxy {

RetryDecision decide_retry(const AttemptFailure& attempt, const RetryBudget& budget) {
  const auto failure = classify(attempt.failure);
  const bool answer_started = attempt.phase == AttemptPhase::answer_started;
  // A pooled connection that failed this way before any answer may only have gone stale.
  const bool maybe_stale =
      failure.retry == RetryKind::fresh_if_reused && attempt.reused_connection && !answer_started;
  const bool health_failure = failure.marks_backend_dead && !maybe_stale;
  // Part of the answer is with the client already: nothing sane is left to tell it.
  if (answer_started) return {NextStep::close_client, health_failure};
  const bool replayable =
      !budget.body_consumed && (attempt.phase == AttemptPhase::connecting ||
                                budget.replayable_after_send || attempt.unprocessed);
  if (maybe_stale && replayable && !budget.fresh_retry_used) {
    return {NextStep::retry_on_fresh_connection, false};
  }
  // A stale-looking connection that cannot be replayed (again) failed for real.
  const bool mark_dead = health_failure || maybe_stale;
  if (failure.retry == RetryKind::none || !replayable || budget.retries_left == 0) {
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
