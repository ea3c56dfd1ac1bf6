// Routes kept in worker memory: least recently used out first, each entry with its own expiry
// and the generation of the invalidation link it was filled under. Bounded in entries and in
// (estimated) bytes: host names and backend lists come from outside, so a count alone does not
// bound memory. Pure (no I/O): the store decides what is fresh enough for its mode (live
// tracking, Hipache's lruCache TTL, or an outage where any entry beats no answer).
#pragma once

#include <algorithm>
#include <array>
#include <cassert>
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
    static constexpr std::size_t kInline = 48;
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
    std::size_t bytes = 0;       // estimated_bytes() when inserted
  };

  // At most `capacity` entries and `byte_budget` bytes (estimated_bytes() summed).
  RouteCache(std::size_t capacity, std::size_t byte_budget)
      : capacity_(capacity), byte_budget_(byte_budget) {
    update_move_distance();
  }

  // The entry for `host`, fresh or not (it becomes the most recently used), or nullptr.
  // Moving an entry to the front writes to its neighbours, cache misses on every hit with
  // thousands of hosts (bench: 10,000 vhosts). An entry moved within the last quarter of a full
  // cache's moves (update_move_distance) has at most that many entries ahead of it and stays
  // where it is: the order is exact where eviction happens, and only the most recently used
  // quarter is left unsorted.
  const Entry* find(std::string_view host) {
    const auto slot = find_slot(host, hash_of(host));
    if (slot == kNone) return nullptr;
    const auto it = slots_[slot].entry;
    if (moves_ - it->moved_at >= move_distance_) {
      entries_.splice(entries_.begin(), entries_, it);
      it->moved_at = ++moves_;
    }
    return &*it;
  }

  // Replaces any entry for `host`, then evicts the least recently used until both bounds hold.
  // An entry larger than the whole budget is not kept (its caller still has the lookup to
  // serve); the older entry for the host goes all the same, it is out of date.
  void insert(std::string_view host, RouteLookup lookup, Clock::time_point expires,
              std::uint64_t generation) {
    erase(host);
    const auto bytes = estimated_bytes(host, lookup);
    if (capacity_ == 0 || bytes > byte_budget_) return;
    if ((entries_.size() + 1) * 2 > slots_.size()) grow();
    const Route* route = lookup.route.get();
    entries_.push_front(
        Entry{HostName(host), std::move(lookup), expires, generation, ++moves_, bytes});
    place(Slot{hash_of(host), entries_.begin(), route});
    bytes_ += bytes;
    while (entries_.size() > capacity_ || bytes_ > byte_budget_) {
      erase(entries_.back().host.view());
    }
    assert(entries_.size() <= capacity_ && bytes_ <= byte_budget_);
    update_move_distance();
  }

  void erase(std::string_view host) {
    const auto slot = find_slot(host, hash_of(host));
    if (slot == kNone) return;
    assert(bytes_ >= slots_[slot].entry->bytes);
    bytes_ -= slots_[slot].entry->bytes;
    entries_.erase(slots_[slot].entry);
    vacate(slot);
  }

  void clear() {
    entries_.clear();
    bytes_ = 0;
    std::fill(slots_.begin(), slots_.end(), Slot{});
  }

  std::size_t size() const { return entries_.size(); }
  std::size_t bytes() const { return bytes_; }

  // The memory an entry for `host` holding `lookup` costs, as counted against the budget: the
  // entry with its list node and its share of the index (at most half full and doubling: up to
  // four slots per entry, so the index too stays within the budget), a host name too long to
  // sit inline, and the route with every string it owns (its backends' flags include the dead
  // set). A route is counted in full by each entry that holds it: the store reads one per
  // entry, and were one ever shared, counting it twice over-estimates, never under.
  static std::size_t estimated_bytes(std::string_view host, const RouteLookup& lookup) {
    std::size_t bytes =
        sizeof(Entry) + kListLinks + kMallocOverhead + kSlotsPerEntry * sizeof(Slot);
    if (host.size() > HostName::kInline) bytes += host.size() + 1 + kMallocOverhead;
    if (lookup.route) bytes += route_bytes(*lookup.route);
    return bytes;
  }

 private:
  // The index is an open-addressing table (linear probing, at most half full) of the host's
  // hash, its entry and its route. A hit reads one slot, then the entry (name included) and the
  // route side by side: a node-based map would add its bucket's chain and a separately
  // allocated key, each one more cache miss per request when thousands of hosts take turns; a
  // flat map cannot prefetch the route before its key compares (bench/README.md, decisions).
  struct Slot {
    std::size_t hash = 0;  // 0: empty (hash_of never returns 0)
    std::list<Entry>::iterator entry;
    const Route* route = nullptr;  // the entry's, so both can be fetched at once
  };
  static constexpr std::size_t kNone = SIZE_MAX;
  static constexpr std::size_t kMinSlots = 16;
  static constexpr std::size_t kSlotsPerEntry = 4;
  static constexpr std::size_t kListLinks = 2 * sizeof(void*);
  // glibc's chunk header and rounding to 16 bytes, on average.
  static constexpr std::size_t kMallocOverhead = 16;
  // make_shared's counts and vtable pointer, allocated along with the route.
  static constexpr std::size_t kSharedControlBlock = 16;

  // Heap bytes a string owns beyond its object (none while it fits the inline buffer).
  static std::size_t string_heap_bytes(const std::string& s) {
    return s.capacity() > std::string().capacity() ? s.capacity() + 1 + kMallocOverhead : 0;
  }

  static std::size_t route_bytes(const Route& route) {
    std::size_t bytes = sizeof(Route) + kSharedControlBlock + kMallocOverhead +
                        string_heap_bytes(route.identifier) + string_heap_bytes(route.frontend_key);
    if (route.backends.capacity() > decltype(route.backends)::static_capacity) {
      bytes += route.backends.capacity() * sizeof(Backend) + kMallocOverhead;
    }
    for (const auto& backend : route.backends) {
      bytes += string_heap_bytes(backend.host) + string_heap_bytes(backend.pool_key) +
               string_heap_bytes(backend.url);
    }
    return bytes;
  }

  // find() leaves an entry in place when it moved within the last quarter of the entries the
  // cache holds when full: by count, or by bytes at the current average size when that is
  // fewer (a cache full by bytes would otherwise never reorder its hits, and drop hot entries).
  // Recomputed on insert (a miss), not on the hit path.
  void update_move_distance() {
    std::size_t full = capacity_;
    if (!entries_.empty() && bytes_ > 0) {
      full = std::min(full, byte_budget_ / std::max<std::size_t>(1, bytes_ / entries_.size()));
    }
    move_distance_ = full / 4;
  }

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
    assert(entries_.size() * 2 <= slots_.size());  // at most half full: probes end
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
  std::size_t byte_budget_;
  std::size_t bytes_ = 0;          // estimated_bytes() of the entries held
  std::size_t move_distance_ = 0;  // update_move_distance()
  std::uint64_t moves_ = 0;        // entries put at the front so far
  std::list<Entry> entries_;       // most recently used first
  std::vector<Slot> slots_;        // size: a power of two, or empty before the first insert
};

}  // namespace hipache::routing
