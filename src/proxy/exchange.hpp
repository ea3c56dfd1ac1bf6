// One request's life on the proxy: checks, route lookup, the attempts on backends with the retry
// policy (proxy/retry_policy.hpp), the response relay, the 101 hand-off, the error page and the
// access-log line. It talks to its client only through ClientSide (proxy/client_side.hpp).
//
// Its methods are spread by role: exchange.cpp (checks, routing, attempts, error pages, log),
// upstream_attempt.cpp (one attempt: connect, send the request and its body),
// response_relay.cpp (the backend's answer to the client, and the 101 hand-off) and
// h2_backend_attempt.cpp (an attempt on an HTTP/2 backend).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cassert>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "hipache/errors.hpp"
#include "hipache/route.hpp"
#include "http/framing.hpp"
#include "http/message.hpp"
#include "http/serialize.hpp"
#include "log/access_log.hpp"
#include "proxy/client_side.hpp"
#include "proxy/proxy_context.hpp"

namespace hipache::proxy {

// Memory an exchange uses, kept by its client connection from one request to the next so that
// coroutine frames stay small (Asio recycles frames up to ~1 KB; larger ones are a malloc).
struct ExchangeScratch {
  std::string head;  // an HTTP/1 header serialized for sending, until it is written
  // Declared before the parser whose fields it holds, so destroyed after it.
  http::HeaderMemory response_memory;
  std::optional<http::ResponseParser> response_reader;  // the backend's answer
  // X-Forwarded-* fields for the backend that the request lacks (values outlive the request).
  http::AddedFields forwarded;
  std::string request_id;  // with server.requestIdHeader: this request's (http/request_id.hpp)

  // Between requests: the last answer's parser and fields go.
  void release() {
    response_reader.reset();
    response_memory.release();
  }
};

// What the client connection's parser found besides the request itself.
struct ReceivedRequest {
  http::Request& request;
  bool keep_alive = true;  // the client's own wish
  bool upgrade = false;    // Connection: upgrade + Upgrade
  http::ParsedFraming parsed_framing;
};

class H2Upstream;

class Exchange {
 public:
  Exchange(ProxyContext& ctx, ClientSide& client, ExchangeScratch& scratch);

  // Serves the request: returns whether the client connection may carry another one.
  boost::asio::awaitable<bool> serve(ReceivedRequest received);

 private:
  using Clock = std::chrono::steady_clock;

  // One attempt on one backend, as the attempt loop sees it. No failure: done, the client has
  // its answer (or has gone away).
  struct Attempt {
    std::optional<Failure> failure;
    AttemptPhase phase = AttemptPhase::connecting;
    bool reused_connection = false;  // the backend connection came from the pool
    bool unprocessed = false;        // an HTTP/2 backend refused the stream: replayable
    bool body_consumed = false;      // some body byte was read from the client
    bool client_reusable = false;
  };

  // exchange.cpp
  boost::asio::awaitable<bool> route(const std::string& host);
  boost::asio::awaitable<bool> send_ping();
  boost::asio::awaitable<bool> proxy(const std::string& host, const Route& route);
  void mark_backend_dead(const std::string& host, const Route& route,
                         std::string_view failure_reason);
  void prepare_upstream_request();
  boost::asio::awaitable<bool> send_error(Failure failure);
  void add_debug_headers(http::Response& message, const std::string& host,
                         const Route& route) const;
  void add_request_id(http::Response& message) const;
  void log_exchange() const;
  log::AccessLogEntry access_entry() const;
  bool body_pending() const { return !client_.request_body_done(); }

  // upstream_attempt.cpp
  boost::asio::awaitable<Attempt> forward(const std::string& host, const Route& route);
  Attempt fail_upstream(std::unique_ptr<UpstreamConnection> upstream, Attempt attempt,
                        Failure failure);
  Attempt fail_client(std::unique_ptr<UpstreamConnection> upstream, Attempt attempt);

  // h2_backend_attempt.cpp
  boost::asio::awaitable<Attempt> forward_h2(const std::string& host, const Route& route);
  boost::asio::awaitable<Attempt> relay_h2_answer(std::shared_ptr<H2Upstream> upstream,
                                                  const std::string& host, const Route& route,
                                                  Attempt attempt);
  boost::asio::awaitable<BodyRelay> send_h2_body(std::shared_ptr<H2Upstream> upstream);
  boost::asio::awaitable<BodyRelay> replay_h2_body(std::shared_ptr<H2Upstream> upstream);

  // response_relay.cpp
  boost::asio::awaitable<Attempt> relay_response(std::unique_ptr<UpstreamConnection> upstream,
                                                 const std::string& host, const Route& route,
                                                 Attempt attempt, bool body_cut_short);
  bool prepare_answer_header(http::Response& response, const http::Framing& framing,
                             const std::string& host, const Route& route);
  boost::asio::awaitable<boost::system::error_code> send_interim(http::Response& interim);
  boost::asio::awaitable<Attempt> tunnel(std::unique_ptr<UpstreamConnection> upstream,
                                         http::Response& response, const Route& route,
                                         const std::string& host, Attempt attempt);

  ProxyContext& ctx_;
  ClientSide& client_;
  ExchangeScratch& scratch_;
  http::Request* request_ = nullptr;  // set by serve(); rewritten in place for the backend
  std::chrono::seconds timeout_;

  Clock::time_point started_ = Clock::now();
  Clock::time_point backend_started_{};
  Clock::time_point backend_finished_{};
  unsigned status_ = 0;
  std::uint64_t bytes_sent_ = 0;
  std::string_view identifier_ = "-";  // the route's, which outlives the exchange
  std::string_view frontend_;          // the Host routed by (metrics), for as long as serve()
  // Facts about the client's request, taken before it is rewritten for the backend.
  unsigned client_version_ = 11;
  bool client_keep_alive_ = true;
  bool wants_debug_ = false;       // X-Debug present
  bool has_expect_ = false;        // an Expect field (ours to answer, never forwarded)
  bool expects_continue_ = false;  // Expect: 100-continue from an HTTP/1.1 client
  bool upgrade_ = false;           // Connection: upgrade + Upgrade (WebSocket and the like)
  http::Framing framing_;          // of the request, as it goes to the backend
  // For the access log, taken from the header: the fields a chunked body's trailers add to the
  // request must not stand in for them. (Views into the request's header memory.)
  std::string_view real_ip_;  // X-Real-IP as forwarded, when the client's is kept
  std::string_view referer_;
  std::string_view user_agent_;

  // The current attempt's backend: its index in the route (dead marks and x-debug name it).
  std::size_t backend_index_ = 0;
  const Backend& backend(const Route& route) const {
    assert(backend_index_ < route.backends.size());
    return route.backends[backend_index_];
  }
  bool fresh_connection_ = false;  // the next attempt must not take a pooled connection
  // A request body sent on a reused HTTP/2 connection, kept (when small) until the backend took
  // the stream: if it refuses it, the body is sent again on a fresh connection.
  std::string h2_body_copy_;
  bool h2_body_copied_ = false;  // h2_body_copy_ is the whole body, read from the client

  // For the JSON access log: the backend whose answer was relayed (empty when the answer is
  // ours) and how many attempts the request made.
  std::string_view answered_by_;
  unsigned attempts_ = 0;
};

}  // namespace hipache::proxy
