#include "process/worker_loads.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <system_error>

#include "process/cpu_spread.hpp"

namespace hipache::process {

namespace {

// The slack before a worker counts as over its share: a few connections, or an eighth of the
// average.
constexpr double kMinSlack = 2.0;
constexpr double kSlackFraction = 1.0 / 8;

}  // namespace

WorkerLoads::WorkerLoads() : claimed_(kSlots, false) {
  void* mapping =
      ::mmap(nullptr, sizeof(Table), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mapping == MAP_FAILED) {
    throw std::system_error(errno, std::generic_category(), "mmap of the worker load table");
  }
  // Constructed in place, once, before any fork.
  table_ = std::construct_at(static_cast<Table*>(mapping));
}

WorkerLoads::~WorkerLoads() {
  std::destroy_at(table_);
  ::munmap(table_, sizeof(Table));
}

std::int64_t WorkerLoads::now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::optional<std::size_t> WorkerLoads::claim() {
  const auto free = std::find(claimed_.begin(), claimed_.end(), false);
  if (free == claimed_.end()) return std::nullopt;
  *free = true;
  const auto index = static_cast<std::size_t>(free - claimed_.begin());
  publish(index, 0);
  if (table_->in_use.load(std::memory_order_relaxed) <= index) {
    table_->in_use.store(index + 1, std::memory_order_relaxed);
  }
  return index;
}

void WorkerLoads::release(std::size_t slot) {
  if (slot >= kSlots) return;
  publish(slot, kNotAccepting);
  table_->slots[slot].busy_ms.store(0, std::memory_order_relaxed);
  claimed_[slot] = false;
}

void WorkerLoads::publish(std::size_t slot, std::int64_t connections) {
  if (slot >= kSlots) return;
  table_->slots[slot].connections.store(connections, std::memory_order_relaxed);
  table_->slots[slot].reported_ms.store(now_ms(), std::memory_order_relaxed);
}

bool WorkerLoads::over_share(std::size_t slot) const {
  if (slot >= kSlots) return false;
  const auto mine = table_->slots[slot].connections.load(std::memory_order_relaxed);
  if (mine == kNotAccepting) return false;
  const auto live_since = now_ms() - kStaleReport.count();
  std::int64_t total = 0;
  std::int64_t accepting = 0;
  const auto in_use = std::min(table_->in_use.load(std::memory_order_relaxed), kSlots);
  for (std::size_t i = 0; i < in_use; ++i) {
    const auto& other = table_->slots[i];
    const auto count = other.connections.load(std::memory_order_relaxed);
    if (count == kNotAccepting) continue;
    if (i != slot && other.reported_ms.load(std::memory_order_relaxed) < live_since) continue;
    total += count;
    ++accepting;
  }
  if (accepting < 2) return false;
  const double average = static_cast<double>(total) / static_cast<double>(accepting);
  return static_cast<double>(mine) > average + std::max(kMinSlack, average * kSlackFraction);
}

void WorkerLoads::publish_busy_cpu(std::size_t slot, int cpu) {
  if (slot >= kSlots) return;
  table_->slots[slot].busy_cpu.store(cpu, std::memory_order_relaxed);
  table_->slots[slot].busy_ms.store(now_ms(), std::memory_order_relaxed);
}

std::optional<int> WorkerLoads::cpu_to_move_to(std::size_t slot, int cpu,
                                               const cpu_set_t& allowed) const {
  if (slot >= kSlots || cpu < 0 || cpu >= CPU_SETSIZE) return std::nullopt;
  const auto busy_since = now_ms() - kBusyFresh.count();
  cpu_set_t busy;
  CPU_ZERO(&busy);
  CPU_SET(cpu, &busy);
  bool shared = false;
  const auto in_use = std::min(table_->in_use.load(std::memory_order_relaxed), kSlots);
  for (std::size_t i = 0; i < in_use; ++i) {
    const auto& other = table_->slots[i];
    if (i == slot || other.busy_ms.load(std::memory_order_relaxed) < busy_since) continue;
    const int other_cpu = other.busy_cpu.load(std::memory_order_relaxed);
    if (other_cpu < 0 || other_cpu >= CPU_SETSIZE) continue;
    CPU_SET(other_cpu, &busy);
    if (other_cpu == cpu && i < slot) shared = true;
  }
  if (!shared) return std::nullopt;
  // The first free CPU after this one, wrapping: workers leaving the same CPU for different
  // reasons do not all pile onto CPU 0.
  for (int step = 1; step < CPU_SETSIZE; ++step) {
    const int candidate = (cpu + step) % CPU_SETSIZE;
    if (CPU_ISSET(candidate, &allowed) && !CPU_ISSET(candidate, &busy)) return candidate;
  }
  return std::nullopt;
}

std::chrono::microseconds AcceptTurn::before_accept(std::int64_t connections) {
  if (loads_ == nullptr) return std::chrono::microseconds::zero();
  loads_->publish(slot_, connections);
  return loads_->over_share(slot_) ? kYield : std::chrono::microseconds::zero();
}

bool AcceptTurn::may_accept_more(std::int64_t connections) {
  if (loads_ == nullptr) return true;
  loads_->publish(slot_, connections);
  return !loads_->over_share(slot_);
}

void AcceptTurn::publish(std::int64_t connections) {
  if (loads_ != nullptr) loads_->publish(slot_, connections);
}

std::optional<CpuSpread> AcceptTurn::cpu_spread() const {
  if (loads_ == nullptr) return std::nullopt;
  return CpuSpread(*loads_, slot_);
}

void AcceptTurn::stop_accepting() {
  if (loads_ != nullptr) loads_->publish(slot_, WorkerLoads::kNotAccepting);
}

}  // namespace hipache::process
