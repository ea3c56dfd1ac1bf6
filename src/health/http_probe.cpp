#include "health/http_probe.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include "hipache/errors.hpp"
#include "http/read.hpp"
#include "http/serialize.hpp"

namespace hipache::health {

namespace {
namespace asio = boost::asio;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
}  // namespace

asio::awaitable<ProbeResult> probe_backend(proxy::UpstreamPool& pool, const Backend& backend,
                                           const ProbeRequest& request) {
  ProbeResult result;
  if (!backend.valid) {
    result.error = "unparsable backend URL";
    co_return result;
  }
  auto acquired = co_await pool.acquire(backend, false, true);
  if (!acquired.connection) {
    result.error = std::string(classify(*acquired.failure).reason);
    co_return result;
  }
  auto connection = std::move(acquired.connection);

  http::Request message;  // fields from the default memory resource: one request per check
  message.method_string(request.method);
  message.target(request.path);
  message.version(11);
  message.set(http::bhttp::field::host, request.host);
  message.set(http::bhttp::field::user_agent, request.user_agent);
  message.set(http::bhttp::field::connection, "close");
  std::string header;
  http::serialize_header(message, http::AddedFields{}, http::Framing{}, header);

  connection->stream.tcp().expires_after(request.timeout);
  auto [write_ec, written] = co_await connection->stream.visit(
      [&](auto& stream) { return asio::async_write(stream, asio::buffer(header), kUseTuple); });
  if (write_ec) {
    result.error = "sending the check: " + write_ec.message();
    pool.release(std::move(connection), false);
    co_return result;
  }
  http::bhttp::response_parser<http::bhttp::empty_body> parser;
  parser.header_limit(http::kHeaderLimit);
  if (request.method == "HEAD") parser.skip(true);
  auto [read_ec, used] = co_await connection->stream.visit(
      [&](auto& stream) { return http::read_header(stream, connection->buffer, parser); });
  pool.release(std::move(connection), false);
  if (read_ec && !parser.is_header_done()) {
    result.error = "reading the answer: " + read_ec.message();
    co_return result;
  }
  result.status = parser.get().result_int();
  result.healthy = status_is_healthy(result.status);
  if (!result.healthy) result.error = "answered " + std::to_string(result.status);
  co_return result;
}

}  // namespace hipache::health
