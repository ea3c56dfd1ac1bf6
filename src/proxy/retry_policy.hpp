// What happens after a failed attempt to forward a request (SPEC section 6): retry on a fresh
// connection to the same backend, retry on another backend, answer an error page, or close the
// client connection; and whether the backend is marked dead. Pure, table-tested
// (tests/unit/retry_policy_test.cpp); the request path calls mark_dead from the one place that
// applies this decision.
#pragma once

#include <boost/beast/http/verb.hpp>

#include "hipache/errors.hpp"

namespace hipache::proxy {

// One failed attempt, as the request path saw it.
struct AttemptFailure {
  Failure failure = Failure::backend_reset;
  AttemptPhase phase = AttemptPhase::connecting;
  bool reused_connection = false;  // the connection came from the pool
  // The backend said it did not process the request (an HTTP/2 stream refused, RFC 9113
  // section 8.7): it may be sent again whatever its method.
  bool unprocessed = false;
};

// What the request allows so far.
struct RetryBudget {
  bool body_consumed = false;          // a body byte was read from the client: not replayable
  bool replayable_after_send = false;  // no body and an idempotent method
  unsigned retries_left = 0;           // on other backends (server.retryOnError)
  bool fresh_retry_used = false;       // the one replay on a fresh connection is spent
};

enum class NextStep { retry_on_fresh_connection, retry_elsewhere, error_page, close_client };

struct RetryDecision {
  NextStep next;
  bool mark_dead;
};

RetryDecision decide_retry(const AttemptFailure& attempt, const RetryBudget& budget);

// RFC 9110 section 9.2.2: a request with one of these methods may be sent again.
bool is_idempotent(boost::beast::http::verb method);

}  // namespace hipache::proxy
