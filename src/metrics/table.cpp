#include "metrics/table.hpp"

#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <system_error>
#include <unordered_map>

namespace hipache::metrics {

namespace {

constexpr pid_t kReserved = -1;
constexpr int kSnapshotTries = 100;

std::uint64_t frontend_hash(std::string_view host) {
  std::uint64_t hash = 14695981039346656037ULL;  // FNV-1a
  for (const char c : host) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  return hash | 1;  // 0 marks a free entry
}

void store_name(FrontendEntry& entry, std::string_view host) {
  std::array<char, kFrontendNameBytes> bytes{};
  std::memcpy(bytes.data(), host.data(), std::min(host.size(), bytes.size()));
  for (std::size_t i = 0; i < entry.name.size(); ++i) {
    std::uint64_t word = 0;
    std::memcpy(&word, bytes.data() + i * 8, 8);
    entry.name[i].store(word, std::memory_order_relaxed);
  }
}

std::string load_name(const FrontendEntry& entry) {
  std::array<char, kFrontendNameBytes> bytes{};
  for (std::size_t i = 0; i < entry.name.size(); ++i) {
    const auto word = entry.name[i].load(std::memory_order_relaxed);
    std::memcpy(bytes.data() + i * 8, &word, 8);
  }
  return std::string(bytes.data(), ::strnlen(bytes.data(), bytes.size()));
}

// A torn entry (its name being replaced) is skipped: nullopt.
std::optional<FrontendTotals> read_entry(const FrontendEntry& entry) {
  const auto before = entry.seq.load(std::memory_order_acquire);
  if (before % 2 != 0 || entry.hash.load(std::memory_order_relaxed) == 0) return std::nullopt;
  FrontendTotals totals{load_name(entry), entry.requests.get(), entry.server_errors.get()};
  std::atomic_thread_fence(std::memory_order_acquire);
  if (entry.seq.load(std::memory_order_relaxed) != before) return std::nullopt;
  return totals;
}

void add_histogram(const Histogram& from, std::array<std::uint64_t, kBuckets>& buckets,
                   std::uint64_t& sum_us) {
  for (std::size_t i = 0; i < kBuckets; ++i) buckets[i] += from.buckets[i].get();
  sum_us += from.sum_us.get();
}

}  // namespace

struct MetricsTable::Shared {
  std::atomic<std::uint64_t> folds{0};  // odd while the master folds a worker into `retired`
  std::array<Cell, static_cast<std::size_t>(MasterCounter::count)> master;
  WorkerSlot retired;
  std::array<WorkerSlot, kSlots> slots;
};

void Histogram::observe(std::uint64_t micros) {
  std::size_t bucket = 0;
  const double seconds = static_cast<double>(micros) / 1e6;
  while (bucket < kDurationBounds.size() && seconds > kDurationBounds[bucket]) ++bucket;
  buckets[bucket].add(1);
  sum_us.add(micros);
}

void WorkerSlot::record_request(unsigned status, std::uint64_t total_us, std::uint64_t backend_us) {
  const bool known = status >= kFirstCode && status < kFirstCode + kCodes;
  requests[known ? status - kFirstCode + 1 : 0].add(1);
  request_duration.observe(total_us);
  backend_duration.observe(backend_us);
}

void WorkerSlot::record_frontend(std::string_view host, bool server_error) {
  add_frontend(frontend_hash(host.substr(0, kFrontendNameBytes)), host, 1, server_error ? 1 : 0);
}

void WorkerSlot::add_frontend(std::uint64_t hash, std::string_view host, std::uint64_t count,
                              std::uint64_t server_errors) {
  FrontendEntry* least = &frontends[0];
  for (auto& entry : frontends) {
    const auto held = entry.hash.load(std::memory_order_relaxed);
    if (held == hash) {
      entry.requests.add(count);
      entry.server_errors.add(server_errors);
      return;
    }
    if (held == 0) {
      least = &entry;
      break;
    }
    if (entry.requests.get() < least->requests.get()) least = &entry;
  }
  // A free entry, or the least used one gives way (its counts start over for the newcomer).
  const auto seq = least->seq.load(std::memory_order_relaxed);
  least->seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  least->hash.store(hash, std::memory_order_relaxed);
  store_name(*least, host);
  least->requests.value.store(count, std::memory_order_relaxed);
  least->server_errors.value.store(server_errors, std::memory_order_relaxed);
  least->seq.store(seq + 2, std::memory_order_release);
}

void WorkerSlot::fold_into(WorkerSlot& retired) const {
  for (std::size_t i = 0; i < requests.size(); ++i) retired.requests[i].add(requests[i].get());
  for (std::size_t i = 0; i < kBuckets; ++i) {
    retired.request_duration.buckets[i].add(request_duration.buckets[i].get());
    retired.backend_duration.buckets[i].add(backend_duration.buckets[i].get());
  }
  retired.request_duration.sum_us.add(request_duration.sum_us.get());
  retired.backend_duration.sum_us.add(backend_duration.sum_us.get());
  for (std::size_t i = 0; i < counters.size(); ++i) retired.counters[i].add(counters[i].get());
  for (const auto& entry : frontends) {
    if (const auto totals = read_entry(entry)) {
      retired.add_frontend(entry.hash.load(std::memory_order_relaxed), totals->name,
                           totals->requests, totals->server_errors);
    }
  }
}

void WorkerSlot::reset() {
  std::destroy_at(this);
  std::construct_at(this);
}

std::uint64_t Snapshot::total_requests() const {
  std::uint64_t total = 0;
  for (const auto count : requests) total += count;
  return total;
}

std::unique_ptr<MetricsTable> MetricsTable::open(int inherited_memfd) {
  try {
    return inherited_memfd >= 0 ? std::make_unique<MetricsTable>(inherited_memfd)
                                : std::make_unique<MetricsTable>();
  } catch (const std::exception& error) {
    spdlog::warn("no metrics: {}", error.what());
    return nullptr;
  }
}

MetricsTable::MetricsTable() {
  fd_ = ::memfd_create("hipache-metrics", MFD_CLOEXEC);
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "memfd for the metrics");
  if (::ftruncate(fd_, sizeof(Shared)) != 0) {
    const int error = errno;
    ::close(fd_);
    throw std::system_error(error, std::generic_category(), "sizing the metrics table");
  }
  map(fd_);
  std::construct_at(shared_);  // once, before any fork
}

MetricsTable::MetricsTable(int memfd) {
  fd_ = memfd;
  map(fd_);  // constructed by the previous image
}

void MetricsTable::map(int fd) {
  void* mapping = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mapping == MAP_FAILED) {
    const int error = errno;
    ::close(fd);
    throw std::system_error(error, std::generic_category(), "mmap of the metrics table");
  }
  shared_ = static_cast<Shared*>(mapping);
}

MetricsTable::~MetricsTable() {
  ::munmap(shared_, sizeof(Shared));
  ::close(fd_);
}

WorkerSlot* MetricsTable::reserve() {
  for (auto& slot : shared_->slots) {
    std::int32_t free = 0;
    if (slot.pid.compare_exchange_strong(free, kReserved, std::memory_order_relaxed)) {
      slot.started_unix.store(::time(nullptr), std::memory_order_relaxed);
      return &slot;
    }
  }
  return nullptr;
}

void MetricsTable::assign(WorkerSlot* slot, pid_t pid) {
  if (slot != nullptr) slot->pid.store(pid, std::memory_order_relaxed);
}

void MetricsTable::release(WorkerSlot* slot) {
  if (slot == nullptr) return;
  slot->reset();
}

void MetricsTable::retire(pid_t pid) {
  for (auto& slot : shared_->slots) {
    if (slot.pid.load(std::memory_order_relaxed) != pid) continue;
    const auto folds = shared_->folds.load(std::memory_order_relaxed);
    shared_->folds.store(folds + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    slot.fold_into(shared_->retired);
    slot.reset();
    shared_->folds.store(folds + 2, std::memory_order_release);
    return;
  }
}

void MetricsTable::count(MasterCounter counter) {
  shared_->master[static_cast<std::size_t>(counter)].add(1);
}

Snapshot MetricsTable::snapshot(std::size_t frontends) const {
  Snapshot out;
  for (int attempt = 0; attempt < kSnapshotTries; ++attempt) {
    out = Snapshot{};
    const auto before = shared_->folds.load(std::memory_order_acquire);
    if (before % 2 != 0) continue;
    std::unordered_map<std::string, FrontendTotals> by_name;
    const auto add_slot = [&](const WorkerSlot& slot) {
      for (std::size_t i = 0; i < slot.requests.size(); ++i) {
        out.requests[i] += slot.requests[i].get();
      }
      add_histogram(slot.request_duration, out.request_duration, out.request_duration_sum_us);
      add_histogram(slot.backend_duration, out.backend_duration, out.backend_duration_sum_us);
      for (std::size_t i = 0; i < slot.counters.size(); ++i) {
        out.counters[i] += slot.counters[i].get();
      }
      if (frontends == 0) return;
      for (const auto& entry : slot.frontends) {
        if (const auto totals = read_entry(entry)) {
          auto& sum = by_name[totals->name];
          sum.name = totals->name;
          sum.requests += totals->requests;
          sum.server_errors += totals->server_errors;
        }
      }
    };
    add_slot(shared_->retired);
    for (const auto& slot : shared_->slots) {
      const pid_t pid = slot.pid.load(std::memory_order_relaxed);
      if (pid == 0) continue;
      add_slot(slot);
      if (pid == kReserved) continue;
      WorkerView view{pid, slot.started_unix.load(std::memory_order_relaxed), 0, {}};
      for (const auto& count : slot.requests) view.requests += count.get();
      for (std::size_t i = 0; i < slot.gauges.size(); ++i) {
        view.gauges[i] = slot.gauges[i].load(std::memory_order_relaxed);
        out.gauges[i] += view.gauges[i];
      }
      out.workers.push_back(view);
    }
    for (std::size_t i = 0; i < out.master.size(); ++i) out.master[i] = shared_->master[i].get();
    std::atomic_thread_fence(std::memory_order_acquire);
    if (shared_->folds.load(std::memory_order_relaxed) != before) continue;
    for (auto& [name, totals] : by_name) out.frontends.push_back(std::move(totals));
    std::sort(out.frontends.begin(), out.frontends.end(), [](const auto& a, const auto& b) {
      return a.requests != b.requests ? a.requests > b.requests : a.name < b.name;
    });
    if (out.frontends.size() > frontends) out.frontends.resize(frontends);
    break;
  }
  return out;
}

}  // namespace hipache::metrics
