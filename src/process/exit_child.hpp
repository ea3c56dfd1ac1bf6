#pragma once

#include <unistd.h>

// A forked child ends with _exit (never the master's destructors). The profile-generating build
// of scripts/build.sh (HIPACHE_PGO=generate) must still write the child's counters first:
// _exit skips the exit hook that does it.
#ifdef HIPACHE_PGO_GENERATE
extern "C" void __gcov_dump();  // NOLINT(bugprone-reserved-identifier): libgcov's entry point
#endif

namespace hipache::process {

[[noreturn]] inline void exit_child(int code) {
#ifdef HIPACHE_PGO_GENERATE
  __gcov_dump();
#endif
  ::_exit(code);
}

}  // namespace hipache::process
