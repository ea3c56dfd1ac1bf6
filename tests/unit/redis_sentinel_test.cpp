// parse_switch_master: the +switch-master payload a sentinel publishes on failover.
#include <gtest/gtest.h>

#include "store/redis_sentinel.hpp"

namespace hipache::store {
namespace {

TEST(SwitchMaster, NewAddressOfTheWatchedMaster) {
  const auto master = parse_switch_master("mymaster 10.0.0.1 6379 10.0.0.2 6380", "mymaster");
  ASSERT_TRUE(master.has_value());
  EXPECT_EQ(*master, (RedisAddress{"10.0.0.2", 6380}));
}

TEST(SwitchMaster, OtherMastersAndMalformedPayloadsAreIgnored) {
  EXPECT_FALSE(parse_switch_master("other 10.0.0.1 6379 10.0.0.2 6380", "mymaster"));
  EXPECT_FALSE(parse_switch_master("mymaster 10.0.0.1 6379 10.0.0.2", "mymaster"));
  EXPECT_FALSE(parse_switch_master("mymaster 10.0.0.1 6379 10.0.0.2 0", "mymaster"));
  EXPECT_FALSE(parse_switch_master("mymaster 10.0.0.1 6379 10.0.0.2 65536", "mymaster"));
  EXPECT_FALSE(parse_switch_master("mymaster 10.0.0.1 6379 10.0.0.2 63x", "mymaster"));
  EXPECT_FALSE(parse_switch_master("mymaster 10.0.0.1 6379 10.0.0.2 6380 extra", "mymaster"));
  EXPECT_FALSE(parse_switch_master("", "mymaster"));
  EXPECT_FALSE(parse_switch_master("mymaster", "mymaster"));
}

}  // namespace
}  // namespace hipache::store
