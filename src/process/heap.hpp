// The worker's heap between bursts. The release binary links jemalloc (CMakeLists.txt): its
// per-thread caches serve the many short-lived blocks of a request (coroutine frames, nghttp2's
// stream state) without glibc's bin searches once 16 streams of one connection allocate at once.
// The sanitizer builds keep glibc's malloc, which the sanitizers replace.
#pragma once

#include <string_view>

namespace hipache::process {

// The allocator this process runs on: "jemalloc", "glibc" or, in the sanitizer build,
// "AddressSanitizer".
std::string_view heap_allocator();

// Hands free heap pages back to the kernel when more than a megabyte lies free, so that after a
// burst of connections the worker's RSS drops back instead of keeping the peak. Called once a
// second; cheap when there is nothing to hand back.
void release_free_heap();

}  // namespace hipache::process
