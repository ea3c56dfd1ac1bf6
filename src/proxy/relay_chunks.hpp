// The fixed buffers that bodies and tunnels stream through, reused across requests of a worker.
//
// A body of any size moves through fixed chunks, held only while it moves. Taking a fresh 64 KB
// block from malloc for each of them cost every small proxied request a trip through glibc's
// slow path (too big for its per-thread cache, and each free of 64 KB consolidates glibc's fast
// bins); a worker keeps its freed chunks instead. A steady load needs as many as it has transfers
// in flight (wrk's 64 connections: about 32 per worker), so up to kKeep stay cached, and the
// chunks no transfer took since the last release_unused() (once a second, worker.cpp) are freed:
// a burst does not pin its memory for good.
// Tunnels borrow smaller chunks, only while bytes queue up (splice.hpp).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

namespace hipache::proxy {

template <std::size_t Size>
class ChunkPool {
 public:
  static constexpr std::size_t kChunkSize = Size;
  static constexpr std::size_t kKeep = 64;
  using Chunk = std::array<char, kChunkSize>;

  // A chunk on loan: goes back to its pool when reset or destroyed. The pool must outlive it
  // (both live as long as the worker's event loop).
  class Lease {
   public:
    Lease() = default;
    ~Lease() { reset(); }
    Lease(Lease&& other) noexcept
        : pool_(std::exchange(other.pool_, nullptr)), chunk_(std::move(other.chunk_)) {}
    Lease& operator=(Lease&& other) noexcept {
      if (this != &other) {
        reset();
        pool_ = std::exchange(other.pool_, nullptr);
        chunk_ = std::move(other.chunk_);
      }
      return *this;
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;

    explicit operator bool() const { return chunk_ != nullptr; }
    Chunk& operator*() const { return *chunk_; }

    void reset() {
      if (chunk_ && pool_) pool_->give_back(std::move(chunk_));
      chunk_.reset();
      pool_ = nullptr;
    }

   private:
    friend class ChunkPool;
    Lease(ChunkPool* pool, std::unique_ptr<Chunk> chunk) : pool_(pool), chunk_(std::move(chunk)) {}
    ChunkPool* pool_ = nullptr;
    std::unique_ptr<Chunk> chunk_;
  };

  ChunkPool() = default;
  ChunkPool(const ChunkPool&) = delete;
  ChunkPool& operator=(const ChunkPool&) = delete;

  Lease take() {
    if (free_.empty()) {
      // for_overwrite: a chunk is written before it is read, it needs no zeroing.
      return Lease(this, std::make_unique_for_overwrite<Chunk>());
    }
    auto chunk = std::move(free_.back());
    free_.pop_back();
    untouched_ = std::min(untouched_, free_.size());
    return Lease(this, std::move(chunk));
  }

  // Frees the cached chunks that no take() needed since the last call (the fewest the cache held
  // in between were never used).
  void release_unused() {
    free_.resize(free_.size() - untouched_);
    untouched_ = free_.size();
  }

  std::size_t cached() const { return free_.size(); }

 private:
  void give_back(std::unique_ptr<Chunk> chunk) {
    if (free_.size() < kKeep) free_.push_back(std::move(chunk));
  }

  std::vector<std::unique_ptr<Chunk>> free_;
  std::size_t untouched_ = 0;  // the fewest chunks cached since the last release_unused()
};

// Bodies: 64 KB, half the system calls of 16 KB on large transfers.
using RelayChunks = ChunkPool<64 * 1024>;
// Tunnel bursts: HAProxy's buffer size; a tunnel often lasts hours.
using TunnelChunks = ChunkPool<16 * 1024>;

}  // namespace hipache::proxy
