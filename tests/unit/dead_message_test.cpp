// The `dead` channel's payload (health/dead_message.hpp): what proxies publish, what hchecker
// read, and what anyone able to PUBLISH might send instead.
#include <gtest/gtest.h>

#include <string>

#include "health/dead_message.hpp"

namespace hipache::health {
namespace {

TEST(DeadMessage, WhatTheProxyPublishes) {
  const auto message = parse_dead_message("www.example.com;http://10.0.0.1:8080;1;3");
  ASSERT_TRUE(message.has_value());
  EXPECT_EQ(message->frontend, "www.example.com");
  EXPECT_EQ(message->backend_url, "http://10.0.0.1:8080");
  EXPECT_EQ(message->index, 1u);
  EXPECT_EQ(message->count, 3u);
}

TEST(DeadMessage, HttpsBackendsAndTrailingWhiteSpace) {
  const auto message = parse_dead_message("a.b;https://backend.example:8443/x;0;2\r\n");
  ASSERT_TRUE(message.has_value());
  EXPECT_EQ(message->backend_url, "https://backend.example:8443/x");
}

TEST(DeadMessage, SemicolonsInTheUrlPath) {
  const auto message = parse_dead_message("h;http://10.0.0.1/a;b;c;1;2");
  ASSERT_TRUE(message.has_value());
  EXPECT_EQ(message->frontend, "h");
  EXPECT_EQ(message->backend_url, "http://10.0.0.1/a;b;c");
  EXPECT_EQ(message->index, 1u);
  EXPECT_EQ(message->count, 2u);
}

TEST(DeadMessage, SingleBackendFrontendsAreNotChecked) {
  // Hipache never marks them, and hchecker ignored them.
  EXPECT_FALSE(parse_dead_message("h;http://10.0.0.1;0;1").has_value());
  EXPECT_FALSE(parse_dead_message("h;http://10.0.0.1;0;0").has_value());
}

TEST(DeadMessage, HostilePayloadsAreRefused) {
  for (const std::string payload : {
           "",
           ";",
           ";;;",
           "h;http://10.0.0.1;1",                       // three fields
           "h;http://10.0.0.1",                         // two
           "h",                                         // one
           ";http://10.0.0.1;0;2",                      // no frontend
           "h;;0;2",                                    // no URL
           "h;http://10.0.0.1;2;2",                     // index outside the count
           "h;http://10.0.0.1;-1;2",                    // negative
           "h;http://10.0.0.1;+1;2",                    // sign
           "h;http://10.0.0.1; 1;2",                    // space
           "h;http://10.0.0.1;0x1;2",                   // hex
           "h;http://10.0.0.1;1;99999999999999999999",  // overflow
           "h;http://10.0.0.1;0;9999999",               // more backends than a list holds
           "h;ftp://10.0.0.1;0;2",                      // not an http(s) URL
           "h;http://;0;2",                             // no host
           "h;http://10.0.0.1:99999;0;2",               // bad port
           "h x;http://10.0.0.1;0;2",                   // space in the frontend
           "h\r\nX: y;http://10.0.0.1;0;2",             // header injection through the frontend
           "h;http://10.0.0.1\r\nX: y;0;2",             // and through the URL
       }) {
    EXPECT_FALSE(parse_dead_message(payload).has_value()) << payload;
  }
  EXPECT_FALSE(parse_dead_message(std::string("h\0;http://10.0.0.1;0;2", 21)).has_value());
  EXPECT_FALSE(parse_dead_message(std::string(300, 'a') + ";http://10.0.0.1;0;2").has_value());
  EXPECT_FALSE(
      parse_dead_message("h;http://10.0.0.1/" + std::string(5000, 'a') + ";0;2").has_value());
}

}  // namespace
}  // namespace hipache::health
