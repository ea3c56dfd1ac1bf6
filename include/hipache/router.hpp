// Host normalisation and the wildcard candidate list (SPEC section 4). Pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace hipache {

// Drops the port (also after "[::1]"), lowercases, drops one trailing dot.
// Returns an empty string when nothing is left.
std::string normalize_host(std::string_view host_header);

// The frontend names to try, in order: the host itself, "*." + its last 5..1 labels (only
// suffixes shorter than the host), then "*".
std::vector<std::string> host_candidates(const std::string& normalized_host);

}  // namespace hipache
