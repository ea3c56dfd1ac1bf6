#include "health/active_checker.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cmath>

#include "health/check_lock.hpp"
#include "health/frontend_check.hpp"
#include "health/http_probe.hpp"

namespace hipache::health {

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using store::RedisCommand;
using store::RedisReply;
constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
constexpr const char* kDeadChannel = "dead";
constexpr const char* kPingKey = "hchecker_ping";  // never prefixed (SPEC section 3)
constexpr auto kPingInterval = 10s;                // hchecker's; proxies trust it for 30 s
constexpr auto kFullWarningInterval = 60s;
const std::string kNoValue;  // an absent lock, or "delete it" (a named object: coroutine argument)

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Commands are built outside the coroutines: GCC 12 mishandles initializer-list temporaries
// inside coroutine bodies (see store/redis_health.cpp).
std::vector<RedisCommand> one(RedisCommand command) {
  std::vector<RedisCommand> commands;
  commands.push_back(std::move(command));
  return commands;
}

std::vector<RedisCommand> ping_commands() {
  return one({"SET", kPingKey, std::to_string(unix_now())});
}

std::vector<RedisCommand> subscriber_ping() {
  return one({"PING"});
}

std::chrono::milliseconds millis(double seconds) {
  return std::chrono::milliseconds(static_cast<long long>(std::llround(seconds * 1000)));
}

}  // namespace

struct ActiveChecker::Watched {
  Watched(asio::any_io_executor executor, std::string u)
      : url(std::move(u)), backend(parse_backend_url(url)), timer(std::move(executor)) {}

  std::string url;
  Backend backend;
  Frontends frontends;  // every frontend that reported it, with the index it has there
  std::string lock;     // the value of ours in the lock hash
  std::chrono::steady_clock::time_point lock_renewed;
  enum class State { unknown, up, down } state = State::unknown;
  bool reported = false;  // a proxy reported it dead since the last check: write the state
  std::chrono::steady_clock::time_point changed;  // last state change (or report)
  std::chrono::steady_clock::time_point marked;   // last SADD + EXPIRE
  asio::steady_timer timer;                       // between checks; cancelled by stop()

  void add(const std::string& frontend, std::size_t index) {
    const auto it = std::find_if(frontends.begin(), frontends.end(),
                                 [&](const auto& f) { return f.first == frontend; });
    if (it == frontends.end()) {
      frontends.emplace_back(frontend, index);
    } else {
      it->second = index;
    }
  }
};

ActiveChecker::ActiveChecker(asio::any_io_executor executor, const Config& config,
                             std::string owner)
    : executor_(executor),
      settings_(config.server.active_health_check.value_or(ActiveHealthCheckSettings{})),
      prefix_(config.write_endpoint.prefix),
      owner_(std::move(owner)),
      lock_hash_(prefix_ + std::string(kLockHash)),
      interval_(millis(settings_.interval_s)),
      timeout_(millis(settings_.timeout_s)),
      pool_(executor, 1, false,
            std::chrono::seconds(
                std::max(1LL, static_cast<long long>(std::ceil(settings_.timeout_s)))),
            config.server.backend_tls_verify) {
  // A check cycle: the wait, a connect and an answer. Marks and locks outlast two of them.
  const double cycle = settings_.interval_s + 2 * settings_.timeout_s;
  lock_hold_s_ = settings_.lock_ttl_s + static_cast<std::int64_t>(std::ceil(cycle));
  mark_ttl_s_ = std::max<std::int64_t>(config.server.dead_backend_ttl_s,
                                       static_cast<std::int64_t>(std::ceil(2 * cycle)));
  const auto redis_timeout =
      std::chrono::milliseconds(static_cast<long long>(config.server.redis_timeout_s * 1000));
  redis_ = std::make_shared<store::RedisConnection>(executor, config.write_endpoint,
                                                    "health checks", redis_timeout);
  subscriber_ = std::make_shared<store::RedisConnection>(executor, config.write_endpoint,
                                                         "dead channel", redis_timeout);
}

void ActiveChecker::start() {
  std::weak_ptr<ActiveChecker> weak = shared_from_this();
  subscriber_->set_keep_connected(true);
  subscriber_->set_push_handler([weak](RedisReply message) {
    if (auto self = weak.lock()) self->on_message(message);
  });
  subscriber_->set_on_connected([weak] {
    if (auto self = weak.lock()) self->subscribe();
  });
  subscriber_->set_on_disconnected([weak] {
    if (auto self = weak.lock()) self->subscribed_ = false;
  });
  subscriber_->start();
  redis_->start();
  asio::co_spawn(
      executor_, [self = shared_from_this()] { return self->ping_loop(); }, asio::detached);
  spdlog::info("active health checks on as {}: {} {} every {} s, lock {}{}", owner_,
               settings_.method, settings_.path, settings_.interval_s, lock_hash_,
               prefix_.empty() ? "" : " (prefixed keys)");
}

void ActiveChecker::subscribe() {
  std::weak_ptr<ActiveChecker> weak = shared_from_this();
  subscriber_->async_exec(one({"SUBSCRIBE", kDeadChannel}), [weak](boost::system::error_code ec,
                                                                   store::RedisReplies replies) {
    auto self = weak.lock();
    if (!self) return;
    self->subscribed_ = !ec && !replies.empty() && replies[0].kind == RedisReply::Kind::array;
    if (!self->subscribed_) spdlog::warn("active health checks: cannot subscribe to `dead`");
  });
}

// ["message", "dead", payload]: a proxy marked a backend dead.
void ActiveChecker::on_message(const RedisReply& message) {
  if (stopped_ || message.elements.size() < 3) return;
  const auto parsed = parse_dead_message(message.elements[2].text);
  if (!parsed) {
    spdlog::debug("ignored a `dead` message that is not <frontend>;<url>;<index>;<count>");
    return;
  }
  if (const auto it = watched_.find(parsed->backend_url); it != watched_.end()) {
    it->second->add(parsed->frontend, parsed->index);
    it->second->reported = true;
    return;
  }
  if (const auto it = taking_.find(parsed->backend_url); it != taking_.end()) {
    it->second.emplace_back(parsed->frontend, parsed->index);
    return;
  }
  if (watched_.size() + taking_.size() >= settings_.max_backends) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_full_warning_) {
      next_full_warning_ = now + kFullWarningInterval;
      spdlog::warn("active health checks: already {} backends (maxBackends), {} not checked",
                   settings_.max_backends, parsed->backend_url);
    }
    return;
  }
  taking_[parsed->backend_url];
  asio::co_spawn(
      executor_,
      [self = shared_from_this(), m = *parsed]() mutable { return self->take(std::move(m)); },
      asio::detached);
}

// Takes the backend's lock if the reporting frontend really lists it (the channel is shared by
// every database and prefix on the server) and nobody else holds it.
asio::awaitable<void> ActiveChecker::take(DeadMessage message) {
  const auto url = message.backend_url;
  auto [ec, replies] = co_await redis_->async_exec(
      listing_commands(prefix_, message.frontend, message.index), kUseTuple);
  bool taken = false;
  std::string lock;
  if (!ec && !stopped_ && still_listed(replies, 0, message.frontend, url)) {
    lock = new_lock_value();
    bool answered = false;
    auto found = co_await swap(url, kNoValue, lock, answered);
    if (answered && !found.empty() && !stopped_) {
      const auto holder = judge_lock(found, owner_, unix_now());
      if (holder == LockHolder::stale || holder == LockHolder::us) {
        const auto expected = found;
        found = co_await swap(url, expected, lock, answered);
        taken = answered && found == expected;
      } else {
        spdlog::debug("active health checks: {} is checked by {}", url, found);
      }
    } else {
      taken = answered && found.empty();
    }
  }
  auto reporters = std::move(taking_[url]);
  taking_.erase(url);
  if (!taken || stopped_) co_return;
  auto watched = std::make_shared<Watched>(executor_, url);
  watched->lock = lock;
  watched->lock_renewed = std::chrono::steady_clock::now();
  watched->add(message.frontend, message.index);
  for (const auto& [frontend, index] : reporters) watched->add(frontend, index);
  watched->reported = true;
  watched_[url] = watched;
  spdlog::info("active health checks: checking {} (reported by {})", url, message.frontend);
  co_await watch(std::move(watched));
}

asio::awaitable<void> ActiveChecker::watch(std::shared_ptr<Watched> watched) {
  auto self = shared_from_this();  // the checker outlives every watch
  for (;;) {
    if (stopped_ || !co_await check_once(*watched) || stopped_) break;
    if (!co_await renew(*watched)) {
      forget(watched->url);
      co_return;
    }
    watched->timer.expires_after(interval_);
    co_await watched->timer.async_wait(kUseTuple);
  }
  if (stopped_) co_return;  // stop() lets the locks go
  bool answered = false;
  co_await swap(watched->url, watched->lock, kNoValue, answered);
  forget(watched->url);
}

// One check and what follows from it. False: the backend is no longer worth checking.
asio::awaitable<bool> ActiveChecker::check_once(Watched& watched) {
  co_await take_slot();
  if (stopped_) {
    give_slot();
    co_return false;
  }
  const auto request = probe_request(watched);
  const auto result = co_await probe_backend(pool_, watched.backend, request);
  give_slot();
  if (stopped_) co_return false;
  const auto now = std::chrono::steady_clock::now();
  const auto state = result.healthy ? Watched::State::up : Watched::State::down;
  const bool changed = state != watched.state;
  const bool refresh = state == Watched::State::down &&
                       now - watched.marked >= std::chrono::seconds(mark_ttl_s_) / 2;
  if (changed || watched.reported || refresh) {
    if (!co_await keep_listed(watched)) {
      spdlog::info("active health checks: no frontend lists {} any more", watched.url);
      co_return false;
    }
    co_await write_marks(watched, state == Watched::State::down);
  }
  if (changed) {
    if (state == Watched::State::down) {
      spdlog::warn("active health checks: {} is down ({}): marked dead", watched.url, result.error);
    } else if (watched.state == Watched::State::down) {
      spdlog::info("active health checks: {} is up again (status {})", watched.url, result.status);
    }
  }
  if (changed || watched.reported) watched.changed = now;
  watched.state = state;
  watched.reported = false;
  if (now - watched.changed >= std::chrono::seconds(settings_.release_after_s)) {
    spdlog::info("active health checks: {} stayed {} for {} s: no longer checked", watched.url,
                 state == Watched::State::up ? "up" : "down", settings_.release_after_s);
    co_return false;
  }
  co_return true;
}

// Drops the frontends whose list no longer holds the URL at its index. False when none is left.
asio::awaitable<bool> ActiveChecker::keep_listed(Watched& watched) {
  auto [ec, replies] = co_await redis_->async_exec(listing_of(watched), kUseTuple);
  if (ec) co_return true;  // Redis is away: nothing to decide now
  Frontends kept;
  std::size_t offset = 0;
  for (const auto& [frontend, index] : watched.frontends) {
    if (still_listed(replies, offset, frontend, watched.url)) kept.emplace_back(frontend, index);
    offset += listing_reply_count(frontend);
  }
  watched.frontends = std::move(kept);
  co_return !watched.frontends.empty();
}

ProbeRequest ActiveChecker::probe_request(const Watched& watched) const {
  return {settings_.method, settings_.path,
          settings_.host.value_or(watched.frontends.front().first),
          "hipache-health-check/" HIPACHE_VERSION " (" + owner_ + ")", timeout_};
}

// One transaction for every frontend: SADD + EXPIRE while down, SREM once up.
std::vector<RedisCommand> ActiveChecker::mark_commands(const Watched& watched, bool dead) const {
  std::vector<RedisCommand> commands = one({"MULTI"});
  const auto ttl = std::to_string(mark_ttl_s_);
  for (const auto& [frontend, index] : watched.frontends) {
    const auto key = prefix_ + "dead:" + frontend;
    if (dead) {
      commands.push_back({"SADD", key, std::to_string(index)});
      commands.push_back({"EXPIRE", key, ttl});
    } else {
      commands.push_back({"SREM", key, std::to_string(index)});
    }
  }
  commands.push_back({"EXEC"});
  return commands;
}

std::vector<RedisCommand> ActiveChecker::listing_of(const Watched& watched) const {
  std::vector<RedisCommand> commands;
  for (const auto& [frontend, index] : watched.frontends) {
    auto listing = listing_commands(prefix_, frontend, index);
    std::move(listing.begin(), listing.end(), std::back_inserter(commands));
  }
  return commands;
}

asio::awaitable<void> ActiveChecker::write_marks(Watched& watched, bool dead) {
  auto [ec, replies] = co_await redis_->async_exec(mark_commands(watched, dead), kUseTuple);
  if (ec) {
    spdlog::warn("active health checks: could not mark {} {}: {}", watched.url,
                 dead ? "dead" : "alive", ec.message());
    co_return;
  }
  if (dead) watched.marked = std::chrono::steady_clock::now();
}

// Keeps the lock ahead of its expiry. False when another checker took it meanwhile.
asio::awaitable<bool> ActiveChecker::renew(Watched& watched) {
  const auto now = std::chrono::steady_clock::now();
  if (now - watched.lock_renewed < std::chrono::seconds(settings_.lock_ttl_s) / 3) co_return true;
  const auto fresh = new_lock_value();
  bool answered = false;
  auto found = co_await swap(watched.url, watched.lock, fresh, answered);
  if (!answered) co_return true;  // Redis is away; the lock still holds for a while
  if (found.empty()) {
    // hchecker empties the whole hash when it starts: the lock is taken again.
    found = co_await swap(watched.url, kNoValue, fresh, answered);
    if (!answered) co_return true;
    if (found.empty()) found = watched.lock;
  }
  if (found != watched.lock) {
    spdlog::info("active health checks: {} is now checked by {}", watched.url, found);
    co_return false;
  }
  watched.lock = fresh;
  watched.lock_renewed = now;
  co_return true;
}

asio::awaitable<std::string> ActiveChecker::swap(const std::string& url,
                                                 const std::string& expected,
                                                 const std::string& desired, bool& answered) {
  auto [ec, replies] =
      co_await redis_->async_exec(one(swap_command(lock_hash_, url, expected, desired)), kUseTuple);
  answered = !ec && replies.size() == 1 && replies[0].kind == RedisReply::Kind::string;
  if (!ec && !replies.empty() && replies[0].kind == RedisReply::Kind::error) {
    spdlog::error("active health checks: the lock script failed: {}", replies[0].text);
  }
  co_return answered ? replies[0].text : std::string();
}

// hchecker_ping tells the proxies an active checker runs (they stop writing dead sets
// themselves): only while this one is subscribed to the `dead` channel. The PING keeps the
// subscriber's silent failures visible (its reply watchdog).
asio::awaitable<void> ActiveChecker::ping_loop() {
  asio::steady_timer timer(executor_);
  while (!stopped_) {
    if (subscribed_) {
      co_await redis_->async_exec(ping_commands(), kUseTuple);
      co_await subscriber_->async_exec(subscriber_ping(), kUseTuple);
    }
    timer.expires_after(subscribed_ ? kPingInterval : 100ms);
    co_await timer.async_wait(kUseTuple);
  }
}

// maxConcurrent checks in flight; beyond, checks wait in line.
asio::awaitable<void> ActiveChecker::take_slot() {
  if (in_flight_ < settings_.max_concurrent) {
    ++in_flight_;
    co_return;
  }
  asio::steady_timer wake(executor_, asio::steady_timer::time_point::max());
  slot_waiters_.push_back(&wake);
  co_await wake.async_wait(kUseTuple);  // cancelled: the slot was handed over (or stopping)
}

void ActiveChecker::give_slot() {
  if (slot_waiters_.empty()) {
    if (in_flight_ > 0) --in_flight_;
    return;
  }
  auto* next = slot_waiters_.front();
  slot_waiters_.pop_front();
  next->cancel();
}

std::string ActiveChecker::new_lock_value() const {
  return lock_value(owner_, unix_now() + lock_hold_s_);
}

std::vector<RedisCommand> ActiveChecker::release_commands() {
  std::vector<RedisCommand> releases;
  for (auto& [url, watched] : watched_) {
    watched->timer.cancel();
    releases.push_back(swap_command(lock_hash_, url, watched->lock, ""));
  }
  return releases;
}

void ActiveChecker::forget(const std::string& url) {
  watched_.erase(url);
}

asio::awaitable<void> ActiveChecker::stop() {
  auto self = shared_from_this();
  stopped_ = true;
  for (auto* waiter : slot_waiters_) waiter->cancel();
  slot_waiters_.clear();
  auto releases = release_commands();
  if (!releases.empty()) co_await redis_->async_exec(std::move(releases), kUseTuple);
  subscriber_->stop();
  redis_->stop();
  spdlog::info("active health checks off: {} backend lock(s) let go", watched_.size());
}

}  // namespace hipache::health
