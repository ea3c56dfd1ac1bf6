#include "process/heap.hpp"

#include <malloc.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

// jemalloc's control interface, weak: the binaries that do not link jemalloc (the unit tests,
// the sanitizer builds) see a null pointer and use glibc's calls instead.
extern "C" int mallctl(const char* name, void* old_value, std::size_t* old_length, void* new_value,
                       std::size_t new_length) __attribute__((weak));

namespace hipache::process {

namespace {

constexpr std::size_t kFreeThreshold = 1024 * 1024;

// jemalloc's index for "all arenas" (MALLCTL_ARENAS_ALL in jemalloc.h).
constexpr const char* kDirtyPages = "stats.arenas.4096.pdirty";
constexpr const char* kPurgeAll = "arena.4096.purge";

bool jemalloc_linked() {
  return mallctl != nullptr;
}

void release_jemalloc_pages() {
  // Statistics are a snapshot taken at each new epoch.
  std::uint64_t epoch = 1;
  std::size_t length = sizeof(epoch);
  mallctl("epoch", &epoch, &length, &epoch, length);
  std::size_t dirty_pages = 0;
  length = sizeof(dirty_pages);
  if (mallctl(kDirtyPages, &dirty_pages, &length, nullptr, 0) != 0) return;
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  if (dirty_pages * page > kFreeThreshold) mallctl(kPurgeAll, nullptr, nullptr, nullptr, 0);
}

}  // namespace

std::string_view heap_allocator() {
#ifdef __SANITIZE_ADDRESS__
  return "AddressSanitizer";  // its allocator stands in for glibc's; trimming is its own affair
#else
  return jemalloc_linked() ? "jemalloc" : "glibc";
#endif
}

void release_free_heap() {
  if (jemalloc_linked()) {
    release_jemalloc_pages();
  } else if (::mallinfo2().fordblks > kFreeThreshold) {
    ::malloc_trim(0);
  }
}

}  // namespace hipache::process
