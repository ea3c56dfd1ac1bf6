// Listening sockets. They are bound before anything else (and before privileges are dropped),
// as plain descriptors, so a master process can bind once and hand them to forked workers.
#pragma once

#include <vector>

#include "hipache/config.hpp"

namespace hipache::net {

struct BoundListener {
  int fd = -1;
  ListenAddress address;
};

// Binds and listens on every configured address. Throws std::runtime_error naming the address.
std::vector<BoundListener> bind_listeners(const Config& config);

void close_listeners(std::vector<BoundListener>& listeners);

}  // namespace hipache::net
