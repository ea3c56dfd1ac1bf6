// The exchange's checks, routing and attempt loop, its error pages and its access-log line.
// Failures are classified once (hipache/errors.hpp); that class decides retry, dead marking
// (proxy/retry_policy.hpp) and the error page.
#include "proxy/exchange.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <boost/beast/core/string.hpp>
#include <cassert>
#include <vector>

#include "hipache/address_range.hpp"
#include "hipache/balancer.hpp"
#include "hipache/router.hpp"
#include "http/error_response.hpp"
#include "http/field_value.hpp"
#include "http/fields.hpp"
#include "http/request_id.hpp"
#include "http/target.hpp"
#include "metrics/record.hpp"
#include "proxy/retry_policy.hpp"

namespace hipache::proxy {

namespace {

namespace bhttp = boost::beast::http;
using http::to_std;

// Beyond these a request is refused (414 / 431 / 400) before any routing: docs/security.md.
constexpr std::size_t kMaxTargetLength = 8 * 1024;
constexpr std::size_t kMaxHeaderFields = 100;
constexpr std::size_t kMaxMethodLength = 32;
// A DNS name has at most 253 characters; a longer Host would only fill the route caches.
constexpr std::size_t kMaxHostLength = 255;
constexpr std::size_t kMaxForwardedForLength = 8 * 1024;

std::chrono::milliseconds elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               since);
}

// An absolute-form target is routed by (and forwarded with as Host) its authority; the backend
// gets the usual origin-form. Not in serve(): the parsed target would enlarge its frame.
http::TargetForm use_absolute_form_authority(http::Request& request) {
  const auto target = http::read_request_target(to_std(request.target()));
  if (target.form == http::TargetForm::absolute) {
    request.set(bhttp::field::host, target.host);
    request.target(target.path);
  }
  return target.form;
}

}  // namespace

Exchange::Exchange(ProxyContext& ctx, ClientSide& client, ExchangeScratch& scratch)
    : ctx_(ctx), client_(client), scratch_(scratch), timeout_(ctx.config.server.tcp_timeout_s) {}

asio::awaitable<bool> Exchange::serve(ReceivedRequest received) {
  request_ = &received.request;
  auto& request = *request_;
  const http::RequestFields fields(request);
  client_version_ = request.version();
  client_keep_alive_ = received.keep_alive;
  upgrade_ = received.upgrade;
  has_expect_ = fields.expect;
  referer_ = to_std(fields.referer);
  user_agent_ = to_std(fields.user_agent);
  real_ip_ = to_std(request["X-Real-IP"]);
  expects_continue_ =
      http::iequals(to_std(fields.expect_value), "100-continue") && client_version_ >= 11;
  // First, so that every answer (error pages too) carries the id.
  if (const auto& name = ctx_.config.server.request_id_header) {
    http::take_request_id(request, *name, ctx_.request_ids, scratch_.request_id);
  }

  // The framing rules (http/framing.hpp) decide how the body is read and forwarded; two Host
  // headers make routing ambiguous.
  framing_ = http::request_framing(fields.framing, client_version_, received.parsed_framing);
  if (!framing_.ok() || fields.host_count > 1 ||
      request.method_string().size() > kMaxMethodLength) {
    co_await send_error(Failure::bad_request);
    co_return false;
  }
  if (request.target().size() > kMaxTargetLength) {
    co_await send_error(Failure::uri_too_long);
    co_return false;
  }
  if (fields.count > kMaxHeaderFields) {
    co_await send_error(Failure::headers_too_large);
    co_return false;
  }
  const auto target_form = use_absolute_form_authority(request);
  if (target_form == http::TargetForm::invalid) {
    co_await send_error(Failure::bad_request);
    co_return false;
  }
  const auto host_header =
      target_form == http::TargetForm::absolute ? request[bhttp::field::host] : fields.host;
  const auto host = normalize_host(host_header);
  if (host == "__ping__") co_return co_await send_ping();
  if (host.empty()) {
    co_await send_error(Failure::missing_host);
    co_return false;
  }
  if (host.size() > kMaxHostLength) {
    co_await send_error(Failure::host_too_long);
    co_return false;
  }
  co_return co_await route(host);
}

asio::awaitable<bool> Exchange::route(const std::string& host) {
  frontend_ = host;
  // (Not `cached ? std::move(*cached) : co_await ...`: built by GCC 12, that form served routes
  // older than a write the request had waited for; test_route_cache caught it.)
  RouteLookup lookup;
  if (auto cached = ctx_.store.cached(host)) {
    lookup = std::move(*cached);
  } else {
    lookup = co_await ctx_.store.lookup(host);
  }
  if (lookup.status != RouteLookup::Status::found) {
    co_return co_await send_error(lookup.status == RouteLookup::Status::unavailable
                                      ? Failure::store_unavailable
                                      : Failure::frontend_not_found);
  }
  identifier_ = lookup.route->identifier;
  co_return co_await proxy(host, *lookup.route);
}

// The answer to a health check of the proxy itself (Host __ping__), never logged.
asio::awaitable<bool> Exchange::send_ping() {
  const bool keep =
      client_keep_alive_ && !body_pending() && !ctx_.closes_for_drain(client_.info().tls);
  http::ErrorResponse answer;
  answer.status = 200;
  answer.body = "ok";
  answer.content_type = "text/plain";
  answer.no_cache = false;
  answer.keep_alive = keep;
  answer.http10_client = client_version_ == 10;
  const auto written = co_await client_.send_generated(answer);
  co_return !written.error && keep;
}

// Forwards the request, retrying on another backend when that is safe (SPEC section 6).
asio::awaitable<bool> Exchange::proxy(const std::string& host, const Route& route) {
  auto& request = *request_;
  prepare_upstream_request();

  std::vector<bool> excluded;  // sized at the first failure: most requests never need it
  std::optional<Failure> last_failure;
  RetryBudget budget;
  budget.replayable_after_send = !body_pending() && is_idempotent(request.method());
  budget.retries_left = ctx_.config.server.retry_on_error;

  for (;;) {
    // The replay on a fresh connection goes to the backend whose pooled connection failed.
    const auto index = fresh_connection_ ? std::optional<std::size_t>(backend_index_)
                                         : pick_backend(route, excluded, ctx_.rng);
    if (!index) co_return co_await send_error(last_failure.value_or(Failure::no_live_backend));
    backend_index_ = *index;
    if (!backend(route).valid) co_return co_await send_error(Failure::bad_backend_url);
    ++attempts_;
    answered_by_ = backend(route).url;
    if (last_failure) metrics::add(metrics::Counter::retries);  // another attempt

    Attempt attempt = co_await forward(host, route);
    budget.body_consumed = budget.body_consumed || attempt.body_consumed;
    if (!attempt.failure) co_return attempt.client_reusable;

    const auto decision = decide_retry(
        {*attempt.failure, attempt.phase, attempt.reused_connection, attempt.unprocessed}, budget);
    // What the loop relies on: one replay on a fresh connection, and only of a pooled one; no
    // retry past the budget; nothing more once part of an answer went to the client.
    assert(decision.next != NextStep::retry_on_fresh_connection ||
           (attempt.reused_connection && !budget.fresh_retry_used));
    assert(decision.next != NextStep::retry_elsewhere || budget.retries_left > 0);
    assert(attempt.phase != AttemptPhase::answer_started ||
           decision.next == NextStep::close_client);
    if (decision.mark_dead) mark_backend_dead(host, route, classify(*attempt.failure).reason);
    last_failure = attempt.failure;
    switch (decision.next) {
      case NextStep::close_client:
        co_return false;
      case NextStep::retry_on_fresh_connection:
        budget.fresh_retry_used = true;
        fresh_connection_ = true;
        continue;
      case NextStep::error_page:
        co_return co_await send_error(*attempt.failure);
      case NextStep::retry_elsewhere:
        break;
    }
    excluded.resize(route.backends.size());
    excluded[*index] = true;
    --budget.retries_left;
  }
}

// The one place a backend is reported dead: a failed attempt (decide_retry) or a 5xx answer
// (status_marks_dead), both for the backend of the current attempt. A failure's reason is
// logged; a 5xx answer is in the access log already.
void Exchange::mark_backend_dead(const std::string& host, const Route& route,
                                 std::string_view failure_reason) {
  if (!failure_reason.empty()) {
    spdlog::warn("backend {} of {} failed: {}", backend(route).url, host, failure_reason);
  }
  ctx_.health.mark_dead(host, route, backend_index_);
}

// Headers for the backend: hop-by-hop removed (but an upgrade stays an upgrade), X-Forwarded-*
// added when absent. Also notes whether the client asked for X-Debug headers.
void Exchange::prepare_upstream_request() {
  auto& request = *request_;
  if (has_expect_) request.erase(bhttp::field::expect);  // we answer 100-continue
  const std::string protocol(upgrade_ ? request[bhttp::field::upgrade] : beast::string_view());
  http::remove_hop_by_hop(request);
  if (upgrade_) {
    request.set(bhttp::field::connection, "Upgrade");
    request.set(bhttp::field::upgrade, protocol);
  }
  // The fields added when absent, after X-Debug (Beast knows none of these names).
  static constexpr std::array<std::string_view, 6> kLookedFor = {
      "X-Debug",           "X-Forwarded-For",      "X-Real-IP",
      "X-Forwarded-Proto", "X-Forwarded-Protocol", "X-Forwarded-Port"};
  auto present = http::find_unknown_fields(request, kLookedFor);
  wants_debug_ = present[0];
  static constexpr std::string_view kForwardedHeaders[] = {
      "X-Forwarded-For",  "X-Real-IP",        "X-Forwarded-Proto", "X-Forwarded-Protocol",
      "X-Forwarded-Port", "X-Forwarded-Host", "Forwarded"};
  const auto& client = client_.info();
  if (const auto& trusted = ctx_.config.server.trust_proxies) {
    if (address_in_ranges(client.remote, *trusted)) {
      // A trusted proxy in front of us: keep its headers, append the hop it came from.
      const auto forwarded_for = request["X-Forwarded-For"];
      // Beast caps a field at 64 KB; a chain that long is not worth extending.
      if (!forwarded_for.empty() && forwarded_for.size() < kMaxForwardedForLength) {
        request.set("X-Forwarded-For", std::string(forwarded_for) + ", " + client.remote);
      }
    } else {
      // Anyone else could claim any address: their forwarded headers are dropped.
      for (const auto name : kForwardedHeaders) request.erase(name);
      real_ip_ = {};
      present.reset();
      present[0] = wants_debug_;
    }
  }
  const char* scheme = client.tls ? "https" : "http";
  const std::array<std::string_view, kLookedFor.size()> values = {
      std::string_view(), client.remote, client.remote, scheme, scheme, client.local_port};
  scratch_.forwarded = http::AddedFields{};
  for (std::size_t i = 1; i < kLookedFor.size(); ++i) {
    if (!present[i]) scratch_.forwarded.add(kLookedFor[i], values[i]);
  }
  if (const auto& name = ctx_.config.server.request_id_header) {
    scratch_.forwarded.add(*name, scratch_.request_id);
  }
  request.version(11);
}

void Exchange::add_debug_headers(http::Response& message, const std::string& host,
                                 const Route& route) const {
  // Both come from Redis: no byte of theirs may start a header line of its own.
  message.set("x-debug-backend-url", http::escape_field_value(backend(route).url));
  message.set("x-debug-backend-id", std::to_string(backend_index_));
  message.set("x-debug-vhost", http::escape_field_value(route.identifier));
  message.set("x-debug-frontend-key", host);
  message.set("x-debug-time-total", std::to_string(elapsed_ms(started_).count()));
  const auto backend_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(backend_finished_ - backend_started_);
  message.set("x-debug-time-backend", std::to_string(backend_ms.count()));
  message.set("x-debug-version-hipache", HIPACHE_VERSION);
}

// The request's id goes back with every answer, replacing any the backend set.
void Exchange::add_request_id(http::Response& message) const {
  if (const auto& name = ctx_.config.server.request_id_header) {
    message.set(*name, scratch_.request_id);
  }
}

// Error page (SPEC section 7). If the request body was not read, the connection cannot be
// reused (its bytes would be taken for the next request), so it is closed after the answer.
asio::awaitable<bool> Exchange::send_error(Failure failure) {
  const auto failure_class = classify(failure);
  // After a refused upgrade the client may already be sending the new protocol's bytes: they
  // must never be read as the next HTTP request. The client's own keep-alive wish counts: the
  // request may already be rewritten for a backend.
  const bool keep = client_keep_alive_ && !body_pending() &&
                    !ctx_.closes_for_drain(client_.info().tls) && !upgrade_ &&
                    failure_class.source != FailureSource::client;
  http::ErrorResponse error;
  error.status = static_cast<unsigned>(failure_class.status);
  error.body = ctx_.error_pages.body(failure_class.status);
  error.keep_alive = keep;
  error.http10_client = client_version_ == 10;
  if (request_->find("X-Debug") != request_->end()) error.debug_reason = failure_class.reason;
  if (const auto& name = ctx_.config.server.request_id_header) {
    error.request_id_field = *name;
    error.request_id = scratch_.request_id;
  }
  // A gRPC client reads its status from grpc-status, not from an HTML page.
  if (http::is_grpc_content_type(to_std((*request_)[bhttp::field::content_type]))) {
    error.make_grpc(failure_class.reason);
  }
  answered_by_ = {};  // the answer is ours, whichever backends were tried
  const auto written = co_await client_.send_generated(error);
  status_ = error.status;
  bytes_sent_ += written.error ? 0 : written.bytes;
  if (backend_finished_ == Clock::time_point{}) backend_finished_ = backend_started_;
  log_exchange();
  co_return !written.error && keep;
}

void Exchange::log_exchange() const {
  metrics::request_done(status_, Clock::now() - started_, backend_finished_ - backend_started_,
                        frontend_);
  if (!ctx_.access_log.enabled()) return;
  auto entry = access_entry();
  entry.total = elapsed_ms(started_);
  entry.backend =
      std::chrono::duration_cast<std::chrono::milliseconds>(backend_finished_ - backend_started_);
  entry.when = std::chrono::system_clock::now();
  ctx_.access_log.write(entry);
}

// The access-log line of the exchange but its times, which the caller fills in.
log::AccessLogEntry Exchange::access_entry() const {
  log::AccessLogEntry entry;
  entry.remote = real_ip_.empty() ? std::string_view(client_.info().remote) : real_ip_;
  entry.method = to_std(request_->method_string());
  entry.target = to_std(request_->target());
  entry.protocol = log::protocol_name(client_.info().http2 ? 20 : client_version_ == 10 ? 10 : 11);
  entry.status = status_;
  entry.bytes_sent = bytes_sent_;
  entry.referer = referer_;
  entry.user_agent = user_agent_;
  entry.identifier = identifier_;
  entry.request_id = scratch_.request_id;
  entry.backend_url = answered_by_;
  entry.attempts = attempts_;
  return entry;
}

}  // namespace hipache::proxy
