#include "hipache/balancer.hpp"

namespace hipache {

std::optional<std::size_t> pick_backend(const Route& route, const std::vector<bool>& excluded,
                                        std::mt19937& rng) {
  const auto usable = [&](std::size_t i) {
    return !route.backends[i].dead && !(i < excluded.size() && excluded[i]);
  };
  std::size_t live = 0;
  for (std::size_t i = 0; i < route.backends.size(); ++i) live += usable(i) ? 1 : 0;
  if (live == 0) return std::nullopt;
  auto nth = std::uniform_int_distribution<std::size_t>(0, live - 1)(rng);
  for (std::size_t i = 0; i < route.backends.size(); ++i) {
    if (usable(i) && nth-- == 0) return i;
  }
  return std::nullopt;  // unreachable: live counted the same predicate
}

}  // namespace hipache
