#include <gtest/gtest.h>

#include "store/redis_connection.hpp"

namespace hipache::store {
namespace {

using Kind = RedisReply::Kind;

TEST(DecodeReplies, EveryReplyType) {
  RedisReplies replies;
  ASSERT_TRUE(
      decode_replies("+OK\r\n-ERR nope\r\n:42\r\n$5\r\nhello\r\n$-1\r\n"
                     "*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
                     replies));
  ASSERT_EQ(replies.size(), 6u);
  EXPECT_EQ(replies[0].kind, Kind::status);
  EXPECT_EQ(replies[0].text, "OK");
  EXPECT_EQ(replies[1].kind, Kind::error);
  EXPECT_EQ(replies[1].text, "ERR nope");
  EXPECT_EQ(replies[2].kind, Kind::integer);
  EXPECT_EQ(replies[2].integer, 42);
  EXPECT_EQ(replies[3].kind, Kind::string);
  EXPECT_EQ(replies[3].text, "hello");
  EXPECT_EQ(replies[4].kind, Kind::nil);
  ASSERT_EQ(replies[5].kind, Kind::array);
  ASSERT_EQ(replies[5].elements.size(), 2u);
  EXPECT_EQ(replies[5].elements[1].elements[0].integer, 1);
}

TEST(DecodeReplies, BinarySafeStrings) {
  RedisReplies replies;
  ASSERT_TRUE(decode_replies(std::string_view("$3\r\na\0b\r\n", 9), replies));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].text, std::string("a\0b", 3));
}

TEST(DecodeReplies, IncompleteInputWaitsAndGarbageFails) {
  RedisReplies replies;
  EXPECT_TRUE(decode_replies("$10\r\nabc", replies));
  EXPECT_TRUE(replies.empty());
  EXPECT_FALSE(decode_replies("?what\r\n", replies));
}

TEST(DecodeReplies, HugeArrayHeaderIsRefusedBeforeAllocating) {
  // hiredis would allocate the element table (8 GB here) on reading the header alone.
  RedisReplies replies;
  EXPECT_FALSE(decode_replies("*1000000000\r\n", replies));
  EXPECT_TRUE(replies.empty());
  // A large but sane array still decodes.
  std::string many = "*5000\r\n";
  for (int i = 0; i < 5000; ++i) many += ":1\r\n";
  ASSERT_TRUE(decode_replies(many, replies));
  ASSERT_EQ(replies.size(), 1U);
  EXPECT_EQ(replies[0].elements.size(), 5000U);
}

}  // namespace
}  // namespace hipache::store
