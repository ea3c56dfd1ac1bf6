// Routes kept in worker memory: least recently used out first, each entry with its own expiry
// and the generation of the invalidation link it was filled under. Pure (no I/O): the store
// decides what is fresh enough for its mode (live tracking, Hipache's lruCache TTL, or an
// outage where any entry beats no answer).
#pragma once

#include <chrono>
#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>

#include "hipache/route_store.hpp"

namespace hipache::routing {

class RouteCache {
 public:
  using Clock = std::chrono::steady_clock;

  struct Entry {
    std::string host;
    RouteLookup lookup;
    Clock::time_point expires;
    std::uint64_t generation = 0;
  };

  explicit RouteCache(std::size_t capacity) : capacity_(capacity) {}

  // The entry for `host`, fresh or not (it becomes the most recently used), or nullptr.
  const Entry* find(const std::string& host) {
    const auto it = index_.find(host);
    if (it == index_.end()) return nullptr;
    entries_.splice(entries_.begin(), entries_, it->second);
    return &*it->second;
  }

  void insert(const std::string& host, RouteLookup lookup, Clock::time_point expires,
              std::uint64_t generation) {
    if (capacity_ == 0) return;
    erase(host);
    entries_.push_front(Entry{host, std::move(lookup), expires, generation});
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

  void clear() {
    index_.clear();
    entries_.clear();
  }

  std::size_t size() const { return entries_.size(); }

 private:
  std::size_t capacity_;
  std::list<Entry> entries_;
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace hipache::routing
