#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <memory>

#include "hipache/config.hpp"
#include "hipache/route_store.hpp"

namespace hipache::store {

// The Redis-backed RouteStore: reads go to the first driver URL, dead marks to the last.
std::shared_ptr<RouteStore> make_redis_route_store(boost::asio::any_io_executor executor,
                                                   const Config& config);

}  // namespace hipache::store
