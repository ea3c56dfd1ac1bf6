// Whether a frontend still lists a backend (health/frontend_check.hpp): the replies to LLEN and
// LINDEX of the exact name, its wildcards and "*", read like the proxy reads routes.
#include <gtest/gtest.h>

#include "health/frontend_check.hpp"

namespace hipache::health {
namespace {

using store::RedisReplies;
using store::RedisReply;
using Kind = RedisReply::Kind;

RedisReply integer(long long value) {
  RedisReply reply;
  reply.kind = Kind::integer;
  reply.integer = value;
  return reply;
}

RedisReply text(const std::string& value) {
  RedisReply reply;
  reply.kind = Kind::string;
  reply.text = value;
  return reply;
}

RedisReply nil() {
  return RedisReply{};
}

// Replies for "a.example.com": itself, *.example.com, *.com, *.
RedisReplies listing(std::size_t matching, const RedisReply& element) {
  RedisReplies replies;
  for (std::size_t i = 0; i < 4; ++i) {
    replies.push_back(integer(i == matching ? 3 : 0));
    replies.push_back(i == matching ? element : nil());
  }
  return replies;
}

TEST(FrontendCheck, CommandsFollowTheCandidates) {
  const auto commands = listing_commands("p:", "a.example.com", 1);
  ASSERT_EQ(commands.size(), 8u);
  EXPECT_EQ(listing_reply_count("a.example.com"), 8u);
  EXPECT_EQ(commands[0], (store::RedisCommand{"LLEN", "p:frontend:a.example.com"}));
  EXPECT_EQ(commands[1], (store::RedisCommand{"LINDEX", "p:frontend:a.example.com", "2"}));
  EXPECT_EQ(commands[2][1], "p:frontend:*.example.com");
  EXPECT_EQ(commands[4][1], "p:frontend:*.com");
  EXPECT_EQ(commands[6][1], "p:frontend:*");
}

TEST(FrontendCheck, ExactAndWildcardLists) {
  const std::string url = "http://10.0.0.1:80";
  EXPECT_TRUE(still_listed(listing(0, text(url)), 0, "a.example.com", url));
  EXPECT_TRUE(still_listed(listing(1, text(url)), 0, "a.example.com", url));
  EXPECT_TRUE(still_listed(listing(3, text(url)), 0, "a.example.com", url));
  EXPECT_FALSE(still_listed(listing(1, text("http://other")), 0, "a.example.com", url));
  EXPECT_FALSE(still_listed(listing(1, nil()), 0, "a.example.com", url));  // list got shorter
  EXPECT_FALSE(still_listed(listing(9, nil()), 0, "a.example.com", url));  // no list at all
}

TEST(FrontendCheck, TheFirstNonEmptyListDecides) {
  const std::string url = "http://10.0.0.1:80";
  auto replies = listing(2, text(url));
  replies[2] = integer(2);  // *.example.com exists and holds another backend there
  replies[3] = text("http://elsewhere");
  EXPECT_FALSE(still_listed(replies, 0, "a.example.com", url));
}

TEST(FrontendCheck, ErrorsAndShortRepliesCountAsNotListed) {
  const std::string url = "http://10.0.0.1:80";
  auto replies = listing(0, text(url));
  RedisReply error;
  error.kind = Kind::error;
  error.text = "WRONGTYPE";
  replies[0] = error;
  EXPECT_FALSE(still_listed(replies, 0, "a.example.com", url));
  EXPECT_FALSE(still_listed(listing(0, text(url)), 4, "a.example.com", url));
  EXPECT_FALSE(still_listed({}, 0, "a.example.com", url));
}

TEST(FrontendCheck, OffsetsReadOneFrontendAmongSeveral) {
  const std::string url = "http://10.0.0.1:80";
  auto replies = listing(9, nil());
  const auto second = listing(1, text(url));
  replies.insert(replies.end(), second.begin(), second.end());
  EXPECT_FALSE(still_listed(replies, 0, "a.example.com", url));
  EXPECT_TRUE(still_listed(replies, 8, "a.example.com", url));
}

}  // namespace
}  // namespace hipache::health
