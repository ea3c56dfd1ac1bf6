// An allocator that keeps a few freed blocks of one size for the next allocation, per thread (a
// worker's loop). For objects made once per request and too large for glibc's per-thread cache
// (over 1 KB), such as an HTTP/2 stream with its header memory: a kept block is reused while
// still in the CPU's caches, without a trip through malloc's bins.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace hipache::proxy {

template <class T>
class RecycledBlocks {
 public:
  using value_type = T;

  RecycledBlocks() noexcept = default;
  template <class U>
  explicit RecycledBlocks(const RecycledBlocks<U>&) noexcept {}

  T* allocate(std::size_t n) {
    auto& kept = shelf().blocks;
    if (n == 1 && !kept.empty()) {
      void* block = kept.back();
      kept.pop_back();
      return static_cast<T*>(block);
    }
    return std::allocator<T>().allocate(n);
  }

  void deallocate(T* block, std::size_t n) noexcept {
    auto& kept = shelf().blocks;
    if (n == 1 && kept.size() < kKept) {
      kept.push_back(block);  // capacity reserved up front: no allocation here
      return;
    }
    std::allocator<T>().deallocate(block, n);
  }

  friend bool operator==(const RecycledBlocks&, const RecycledBlocks&) noexcept { return true; }

 private:
  // At most this many blocks kept per thread: the streams of a burst, not of the busiest moment.
  static constexpr std::size_t kKept = 16;

  struct Shelf {
    Shelf() { blocks.reserve(kKept); }
    ~Shelf() {
      for (void* block : blocks) std::allocator<T>().deallocate(static_cast<T*>(block), 1);
    }
    Shelf(const Shelf&) = delete;
    Shelf& operator=(const Shelf&) = delete;
    std::vector<void*> blocks;
  };

  static Shelf& shelf() {
    thread_local Shelf kept;
    return kept;
  }
};

}  // namespace hipache::proxy
