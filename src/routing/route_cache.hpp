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
    std::uint64_t moved_at = 0;  // moves_ when it last went to the front
  };

  explicit RouteCache(std::size_t capacity) : capacity_(capacity) {}

  // The entry for `host`, fresh or not (it becomes the most recently used), or nullptr.
  // Moving an entry to the front writes to its neighbours, cache misses on every hit with
  // thousands of hosts (bench: 10,000 vhosts). An entry moved within the last quarter of the
  // capacity's moves has at most that many entries ahead of it and stays where it is: the order
  // is exact where eviction happens, and only the most recently used quarter is left unsorted.
  const Entry* find(const std::string& host) {
    const auto it = index_.find(host);
    if (it == index_.end()) return nullptr;
    auto& entry = *it->second;
    if (moves_ - entry.moved_at >= capacity_ / 4) {
      entries_.splice(entries_.begin(), entries_, it->second);
      entry.moved_at = ++moves_;
    }
    return &entry;
  }

  void insert(const std::string& host, RouteLookup lookup, Clock::time_point expires,
              std::uint64_t generation) {
    if (capacity_ == 0) return;
    erase(host);
    entries_.push_front(Entry{host, std::move(lookup), expires, generation, ++moves_});
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
  std::uint64_t moves_ = 0;  // entries put at the front so far
  std::list<Entry> entries_;
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace hipache::routing
