#include "metrics/admin.hpp"

#include <openssl/crypto.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <ctime>
#include <nlohmann/json.hpp>

#include "metrics/exposition.hpp"
#include "store/redis_route_store.hpp"

namespace hipache::metrics {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using json = nlohmann::json;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

struct Answer {
  bhttp::status status = bhttp::status::ok;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

Answer plain(bhttp::status status, std::string body) {
  return {status, "text/plain; charset=utf-8", std::move(body)};
}

std::int64_t gauge_of(const std::array<std::int64_t, static_cast<std::size_t>(Gauge::count)>& g,
                      Gauge which) {
  return g[static_cast<std::size_t>(which)];
}

// What the status page polls: the snapshot, and the dead backends read from Redis.
asio::awaitable<std::string> status_json(AdminContext& ctx) {
  const auto snapshot = ctx.table != nullptr ? ctx.table->snapshot(kFrontendEntries) : Snapshot{};
  json out;
  out["time"] = static_cast<std::int64_t>(::time(nullptr));
  out["servedBy"] = ::getpid();
  out["requests"] = snapshot.total_requests();
  json codes = json::object();
  for (std::size_t i = 0; i < snapshot.requests.size(); ++i) {
    if (snapshot.requests[i] == 0) continue;
    codes[i == 0 ? std::string("other") : std::to_string(i - 1 + kFirstCode)] =
        snapshot.requests[i];
  }
  out["codes"] = std::move(codes);
  json workers = json::array();
  for (const auto& worker : snapshot.workers) {
    workers.push_back({{"pid", worker.pid},
                       {"started", worker.started_unix},
                       {"requests", worker.requests},
                       {"rssBytes", gauge_of(worker.gauges, Gauge::rss_bytes)},
                       {"connections", gauge_of(worker.gauges, Gauge::connections_open)}});
  }
  out["workers"] = std::move(workers);
  const auto counter = [&](Counter c) { return snapshot.counters[static_cast<std::size_t>(c)]; };
  const auto gauge = [&](Gauge g) { return gauge_of(snapshot.gauges, g); };
  out["connections"] = {{"open", gauge(Gauge::connections_open)},
                        {"parked", gauge(Gauge::connections_parked)},
                        {"tunnels", gauge(Gauge::tunnels_open)}};
  out["routeCache"] = {{"hits", counter(Counter::route_cache_hits)},
                       {"misses", counter(Counter::route_cache_misses)},
                       {"invalidations", counter(Counter::route_cache_invalidations)},
                       {"entries", gauge(Gauge::route_cache_entries)},
                       {"bytes", gauge(Gauge::route_cache_bytes)}};
  out["redis"] = {{"connectedWorkers", gauge(Gauge::redis_up)},
                  {"workers", snapshot.workers.size()},
                  {"reconnects", counter(Counter::redis_reconnects)}};
  out["retries"] = counter(Counter::retries);
  out["deadMarks"] = counter(Counter::dead_marks);
  out["workerRestarts"] = snapshot.master[static_cast<std::size_t>(MasterCounter::worker_restarts)];
  out["workerRecycles"] = snapshot.master[static_cast<std::size_t>(MasterCounter::worker_recycles)];
  json frontends = json::array();
  std::vector<std::string> hosts;
  for (const auto& frontend : snapshot.frontends) {
    frontends.push_back({{"name", frontend.name},
                         {"requests", frontend.requests},
                         {"serverErrors", frontend.server_errors}});
    hosts.push_back(frontend.name);
  }
  out["frontends"] = std::move(frontends);
  json dead = json::array();
  auto dead_backends = co_await ctx.store.dead_backends(std::move(hosts), kStatusDeadFrontends);
  for (auto& entry : dead_backends) {
    dead.push_back({{"frontend", entry.frontend}, {"backends", entry.backends}});
  }
  out["deadBackends"] = std::move(dead);
  co_return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

asio::awaitable<Answer> answer(const bhttp::request<bhttp::empty_body>& request,
                               AdminContext& ctx) {
  const auto authorization = request[bhttp::field::authorization];
  if (!authorized(std::string_view(authorization.data(), authorization.size()),
                  ctx.config.admin.token)) {
    co_return plain(bhttp::status::unauthorized, "401 Unauthorized\n");
  }
  if (request.method() != bhttp::verb::get && request.method() != bhttp::verb::head) {
    co_return plain(bhttp::status::method_not_allowed, "405 Method Not Allowed\n");
  }
  std::string_view target(request.target().data(), request.target().size());
  target = target.substr(0, target.find('?'));
  if (target == "/metrics") {
    auto snapshot =
        ctx.table != nullptr ? ctx.table->snapshot(ctx.config.admin.frontend_metrics) : Snapshot{};
    co_return Answer{bhttp::status::ok, std::string(kExpositionContentType),
                     format_prometheus(snapshot)};
  }
  if (target == "/status.json") {
    // co_await in its own statement: GCC 12 miscompiles one inside an aggregate initializer.
    auto body = co_await status_json(ctx);
    co_return Answer{bhttp::status::ok, "application/json", std::move(body)};
  }
  if (target == "/") {
    co_return Answer{bhttp::status::ok, "text/html; charset=utf-8",
                     std::string(status_page_html())};
  }
  co_return plain(bhttp::status::not_found, "404 Not Found\n");
}

}  // namespace

bool authorized(std::string_view authorization, std::string_view token) {
  if (token.empty()) return true;
  constexpr std::string_view kScheme = "Bearer ";
  if (authorization.size() != kScheme.size() + token.size()) return false;
  // The length is no secret; the bytes are compared without an early exit.
  const bool scheme = CRYPTO_memcmp(authorization.data(), kScheme.data(), kScheme.size()) == 0;
  const bool secret =
      CRYPTO_memcmp(authorization.data() + kScheme.size(), token.data(), token.size()) == 0;
  return scheme && secret;
}

asio::awaitable<void> serve_admin(asio::ip::tcp::socket socket, AdminContext& ctx) {
  if (ctx.open >= kMaxConnections) co_return;  // closed at once
  ++ctx.open;
  struct Leave {
    std::size_t& open;
    ~Leave() { --open; }
  } leave{ctx.open};

  beast::tcp_stream stream(std::move(socket));
  stream.expires_after(kTimeout);
  beast::flat_buffer buffer(kHeaderLimit);
  bhttp::request_parser<bhttp::empty_body> parser;
  parser.header_limit(kHeaderLimit);
  auto [read_ec, read_bytes] = co_await bhttp::async_read(stream, buffer, parser, kUseTuple);
  Answer result;
  bool head = false;
  if (read_ec) {
    if (read_ec == bhttp::error::end_of_stream || read_ec == beast::error::timeout) co_return;
    result = plain(bhttp::status::bad_request, "400 Bad Request\n");
  } else {
    head = parser.get().method() == bhttp::verb::head;
    result = co_await answer(parser.get(), ctx);
  }
  bhttp::response<bhttp::string_body> response(result.status, 11);
  response.set(bhttp::field::content_type, result.content_type);
  response.set(bhttp::field::cache_control, "no-store");
  response.set(bhttp::field::connection, "close");
  if (result.status == bhttp::status::unauthorized) {
    response.set(bhttp::field::www_authenticate, "Bearer realm=\"hipache admin\"");
  }
  response.body() = std::move(result.body);
  response.prepare_payload();
  if (head) response.body().clear();
  bhttp::response_serializer<bhttp::string_body> serializer(response);
  if (head) serializer.split(true);
  stream.expires_after(kTimeout);
  if (head) {
    co_await bhttp::async_write_header(stream, serializer, kUseTuple);
  } else {
    co_await bhttp::async_write(stream, serializer, kUseTuple);
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

}  // namespace hipache::metrics
