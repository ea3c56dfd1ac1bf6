// Routes kept in worker memory: least recently used out first, each entry with its own expiry
// and the generation of the invalidation link it was filled under. Pure (no I/O): the store
// decides what is fresh enough for its mode (live tracking, Hipache's lruCache TTL, or an
// outage where any entry beats no answer).
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <string>
#include <string_view>
#include <vector>

#include "hipache/route_store.hpp"

namespace hipache::routing {

class RouteCache {
 public:
  using Clock = std::chrono::steady_clock;

  // A host name kept inside its entry when short enough (nearly all are): comparing it then reads
  // no other cache line. Longer ones go to the heap.
  class HostName {
   public:
    explicit HostName(std::string_view host) : size_(host.size()) {
      if (size_ <= kInline) {
        std::copy(host.begin(), host.end(), inline_.begin());
      } else {
        long_ = std::string(host);
      }
    }
    std::string_view view() const {
      return size_ <= kInline ? std::string_view(inline_.data(), size_) : std::string_view(long_);
    }

   private:
    static constexpr std::size_t kInline = 48;
    std::size_t size_;
    std::array<char, kInline> inline_{};
    std::string long_;
  };

  struct Entry {
    HostName host;
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
  const Entry* find(std::string_view host) {
    const auto slot = find_slot(host, hash_of(host));
    if (slot == kNone) return nullptr;
    const auto it = slots_[slot].entry;
    if (moves_ - it->moved_at >= capacity_ / 4) {
      entries_.splice(entries_.begin(), entries_, it);
      it->moved_at = ++moves_;
    }
    return &*it;
  }

  void insert(std::string_view host, RouteLookup lookup, Clock::time_point expires,
              std::uint64_t generation) {
    if (capacity_ == 0) return;
    erase(host);
    if ((entries_.size() + 1) * 2 > slots_.size()) grow();
    const Route* route = lookup.route.get();
    entries_.push_front(Entry{HostName(host), std::move(lookup), expires, generation, ++moves_});
    place(Slot{hash_of(host), entries_.begin(), route});
    if (entries_.size() > capacity_) erase(entries_.back().host.view());
  }

  void erase(std::string_view host) {
    const auto slot = find_slot(host, hash_of(host));
    if (slot == kNone) return;
    entries_.erase(slots_[slot].entry);
    vacate(slot);
  }

  void clear() {
    entries_.clear();
    std::fill(slots_.begin(), slots_.end(), Slot{});
  }

  std::size_t size() const { return entries_.size(); }

 private:
  // The index is an open-addressing table (linear probing, at most half full) of the host's
  // hash, its entry and its route. A hit reads one slot, then the entry (name included) and the
  // route side by side: a node-based map would add its bucket's chain and a separately
  // allocated key, each one more cache miss per request when thousands of hosts take turns.
  struct Slot {
    std::size_t hash = 0;  // 0: empty (hash_of never returns 0)
    std::list<Entry>::iterator entry;
    const Route* route = nullptr;  // the entry's, so both can be fetched at once
  };
  static constexpr std::size_t kNone = SIZE_MAX;
  static constexpr std::size_t kMinSlots = 16;

  static std::size_t hash_of(std::string_view host) {
    const auto hash = std::hash<std::string_view>{}(host);
    return hash == 0 ? 1 : hash;
  }

  std::size_t mask() const { return slots_.size() - 1; }

  // A hit's route (with its first backends) is read next, and with thousands of hosts it is in
  // no CPU cache: asked for now, it loads along with the entry.
  static void prefetch_route(const Route* route) {
    if (route == nullptr) return;
    const auto* bytes = reinterpret_cast<const char*>(route);
    for (std::size_t offset = 0; offset < sizeof(Route); offset += kCacheLine) {
      __builtin_prefetch(bytes + offset);
    }
  }
  static constexpr std::size_t kCacheLine = 64;

  std::size_t find_slot(std::string_view host, std::size_t hash) const {
    if (slots_.empty()) return kNone;
    for (auto i = hash & mask();; i = (i + 1) & mask()) {
      const auto& slot = slots_[i];
      if (slot.hash == 0) return kNone;
      if (slot.hash == hash) {
        prefetch_route(slot.route);
        if (slot.entry->host.view() == host) return i;
      }
    }
  }

  void place(const Slot& slot) {
    auto i = slot.hash & mask();
    while (slots_[i].hash != 0) i = (i + 1) & mask();
    slots_[i] = slot;
  }

  // Empties slot i and moves later slots of the same probe run back, so that every lookup still
  // reaches its entry before an empty slot (no tombstones to accumulate).
  void vacate(std::size_t i) {
    for (auto j = (i + 1) & mask(); slots_[j].hash != 0; j = (j + 1) & mask()) {
      const auto home = slots_[j].hash & mask();
      const bool home_between = i <= j ? (i < home && home <= j) : (i < home || home <= j);
      if (!home_between) {
        slots_[i] = slots_[j];
        i = j;
      }
    }
    slots_[i] = Slot{};
  }

  void grow() {
    std::vector<Slot> old(std::max(kMinSlots, slots_.size() * 2));
    old.swap(slots_);
    for (const auto& slot : old) {
      if (slot.hash != 0) place(slot);
    }
  }

  std::size_t capacity_;
  std::uint64_t moves_ = 0;   // entries put at the front so far
  std::list<Entry> entries_;  // most recently used first
  std::vector<Slot> slots_;   // size: a power of two, or empty before the first insert
};

}  // namespace hipache::routing
