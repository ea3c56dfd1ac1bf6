// Hipache's optional `server.lruCache` {size, ttl}: remembers lookups for `ttl` seconds, at most
// `size` hosts, least recently used first out. The operator accepts that a Redis change may take
// up to `ttl` to apply. Pure: the caller passes the time.
#pragma once

#include <chrono>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>

#include "hipache/route_store.hpp"

namespace hipache::routing {

class LruRouteCache {
 public:
  using Clock = std::chrono::steady_clock;

  LruRouteCache(std::size_t capacity, std::chrono::milliseconds ttl)
      : capacity_(capacity), ttl_(ttl) {}

  const RouteLookup* find(const std::string& host, Clock::time_point now) {
    const auto it = index_.find(host);
    if (it == index_.end()) return nullptr;
    if (now >= it->second->expires) {
      entries_.erase(it->second);
      index_.erase(it);
      return nullptr;
    }
    entries_.splice(entries_.begin(), entries_, it->second);  // most recently used first
    return &it->second->lookup;
  }

  void insert(const std::string& host, RouteLookup lookup, Clock::time_point now) {
    if (capacity_ == 0) return;
    erase(host);
    entries_.push_front(Entry{host, std::move(lookup), now + ttl_});
    index_.emplace(host, entries_.begin());
    if (entries_.size() > capacity_) {
      index_.erase(entries_.back().host);
      entries_.pop_back();
    }
  }

  void erase(const std::string& host) {
    if (const auto it = index_.find(host); it != index_.end()) {
      entries_.erase(it->second);
      index_.erase(it);
    }
  }

  std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string host;
    RouteLookup lookup;
    Clock::time_point expires;
  };
  std::size_t capacity_;
  std::chrono::milliseconds ttl_;
  std::list<Entry> entries_;
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace hipache::routing
