// Choosing a backend among the live ones (SPEC section 4.6). Pure: the caller owns the RNG.
#pragma once

#include <cstddef>
#include <optional>
#include <random>
#include <vector>

#include "hipache/route.hpp"

namespace hipache {

// Picks uniformly among backends that are neither dead nor excluded (already failed for this
// request). nullopt when none is left.
std::optional<std::size_t> pick_backend(const Route& route, const std::vector<bool>& excluded,
                                        std::mt19937& rng);

}  // namespace hipache
