// Whether a frontend still lists a backend at the index a `dead` message gave, read the way the
// proxy reads routes (SPEC section 4): the exact name, then its wildcards, then "*"; the first
// non-empty list counts. hipache-hchecker looked at `frontend:<name>` only, so a host served by
// `frontend:*.example.com` was never checked. The dead mark goes to `dead:<name>`, the set the
// proxy reads for that host (also when a wildcard list matched).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "store/redis_connection.hpp"

namespace hipache::health {

// LLEN and LINDEX of every candidate list, in candidate order (two commands each).
std::vector<store::RedisCommand> listing_commands(const std::string& prefix,
                                                  const std::string& frontend, std::size_t index);

// Reads the replies of listing_commands() starting at `replies[offset]`: true when the first
// non-empty candidate list holds `url` at `index`. Error replies count as not listed.
bool still_listed(const store::RedisReplies& replies, std::size_t offset,
                  const std::string& frontend, const std::string& url);

// How many replies listing_commands() asks for.
std::size_t listing_reply_count(const std::string& frontend);

}  // namespace hipache::health
