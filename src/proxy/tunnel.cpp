#include "proxy/tunnel.hpp"

#include <array>
#include <boost/asio/steady_timer.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "metrics/record.hpp"
#include "proxy/splice.hpp"
#include "proxy/upstream_pool.hpp"

namespace hipache::proxy {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

// An access-log entry whose texts live in one string of its own: the request they came from is
// gone long before the tunnel closes and its line is written.
class KeptEntry {
 public:
  explicit KeptEntry(const log::AccessLogEntry& entry) : entry_(entry) {
    for (const auto* field : texts()) text_ += *field;
    std::size_t offset = 0;
    for (auto* field : texts()) {
      *field = std::string_view(text_).substr(offset, field->size());
      offset += field->size();
    }
  }
  KeptEntry(const KeptEntry&) = delete;
  KeptEntry& operator=(const KeptEntry&) = delete;

  log::AccessLogEntry& entry() { return entry_; }

 private:
  std::array<std::string_view*, 9> texts() {
    return {&entry_.remote,     &entry_.method,     &entry_.target,
            &entry_.protocol,   &entry_.referer,    &entry_.user_agent,
            &entry_.identifier, &entry_.request_id, &entry_.backend_url};
  }

  log::AccessLogEntry entry_;
  std::string text_;
};

// Owned by the handler of its timer's wait, which is always pending while it lives: it goes
// when that handler finds both directions done (no other operation of it can then be pending).
template <class ClientSide, class BackendSide>
class Tunnel final : public DrainableSession,
                     public std::enable_shared_from_this<Tunnel<ClientSide, BackendSide>> {
 public:
  Tunnel(net::AnyStream client, std::unique_ptr<UpstreamConnection> upstream, ProxyContext& ctx,
         const log::AccessLogEntry& entry, Clock::time_point started,
         Clock::time_point backend_started)
      : client_(std::move(client)),
        upstream_(std::move(upstream)),
        ctx_(ctx),
        timeout_(ctx.config.server.tcp_timeout_s),
        started_(started),
        backend_started_(backend_started),
        timer_(client_.socket().get_executor()),
        splice_(client_.get<ClientSide>(), upstream_->stream.get<BackendSide>(), ctx.tunnel_chunks,
                timer_) {
    if (ctx_.access_log.enabled()) log_.emplace(entry);
    ctx_.sessions.insert(this);
    metrics::add(metrics::Counter::websocket_tunnels);
    metrics::adjust(metrics::Gauge::tunnels_open, 1);
  }
  ~Tunnel() {
    ctx_.sessions.erase(this);
    metrics::adjust(metrics::Gauge::tunnels_open, -1);
  }
  Tunnel(const Tunnel&) = delete;
  Tunnel& operator=(const Tunnel&) = delete;

  // A tunnel is never idle in a drain's sense: it runs on until gracefulWait.
  void close_if_idle() override {}

  void start() {
    splice_.start();
    wait();
  }

 private:
  // Until both directions are done (the splice cancels the wait), or no byte moved for
  // tcpTimeout: then both sides close, and the directions end with errors.
  void wait() {
    const bool watch_idleness = timeout_.count() > 0 && !closed_;
    timer_.expires_at(watch_idleness ? splice_.last_activity() + timeout_
                                     : asio::steady_timer::time_point::max());
    timer_.async_wait([self = this->shared_from_this(), watch_idleness](const auto& /*ec*/) {
      self->waited(watch_idleness);
    });
  }

  void waited(bool watched_idleness) {
    if (watched_idleness && !splice_.finished() &&
        Clock::now() >= splice_.last_activity() + timeout_) {
      splice_.close_both();
      closed_ = true;
    }
    if (splice_.finished()) {
      write_log();
      return;
    }
    wait();
  }

  void write_log() {
    const auto now = Clock::now();
    // A tunnel's request ends when the tunnel does, as in the access log (status 101).
    metrics::request_done(101, now - started_, now - backend_started_, {});
    if (!log_) return;
    auto& entry = log_->entry();
    entry.bytes_sent += splice_.bytes_to_client();
    entry.total = std::chrono::duration_cast<std::chrono::milliseconds>(now - started_);
    entry.backend = std::chrono::duration_cast<std::chrono::milliseconds>(now - backend_started_);
    entry.when = std::chrono::system_clock::now();
    ctx_.access_log.write(entry);
  }

  net::AnyStream client_;
  std::unique_ptr<UpstreamConnection> upstream_;
  ProxyContext& ctx_;
  std::chrono::seconds timeout_;
  std::optional<KeptEntry> log_;  // none while the access log is off
  Clock::time_point started_;
  Clock::time_point backend_started_;
  asio::steady_timer timer_;
  Splice<ClientSide, BackendSide> splice_;
  bool closed_ = false;  // by the idle timeout
};

template <class ClientSide, class BackendSide>
void start(net::AnyStream client, std::unique_ptr<UpstreamConnection> upstream, ProxyContext& ctx,
           const log::AccessLogEntry& entry, Clock::time_point started,
           Clock::time_point backend_started) {
  std::make_shared<Tunnel<ClientSide, BackendSide>>(std::move(client), std::move(upstream), ctx,
                                                    entry, started, backend_started)
      ->start();
}

}  // namespace

void start_tunnel(net::AnyStream client, std::unique_ptr<UpstreamConnection> upstream,
                  ProxyContext& ctx, const log::AccessLogEntry& entry, Clock::time_point started,
                  Clock::time_point backend_started) {
  using net::TcpStream;
  using net::TlsStream;
  const bool backend_tls = upstream->stream.is_tls();
  if (client.is_tls()) {
    (backend_tls ? start<TlsStream, TlsStream>
                 : start<TlsStream, TcpStream>)(std::move(client), std::move(upstream), ctx, entry,
                                                started, backend_started);
  } else {
    (backend_tls ? start<TcpStream, TlsStream>
                 : start<TcpStream, TcpStream>)(std::move(client), std::move(upstream), ctx, entry,
                                                started, backend_started);
  }
}

}  // namespace hipache::proxy
