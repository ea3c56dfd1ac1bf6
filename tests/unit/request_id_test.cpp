// Request ids: which incoming ids are kept, the generator's output, and what happens to the
// request's own fields.
#include "http/request_id.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace hipache::http {
namespace {

TEST(RequestId, WellFormed) {
  for (const std::string& id : std::vector<std::string>{
           "a", "0123456789abcdef0123456789abcdef", "f47ac10b-58cc-4372-a567-0e02b2c3d479",
           "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
           "aGVsbG8gd29ybGQ+/=", "~!#$%&()*+-./:;<=>?@[]^_`{|}", std::string(200, 'x')}) {
    EXPECT_TRUE(is_well_formed_request_id(id)) << id;
  }
}

TEST(RequestId, Malformed) {
  for (const std::string& id :
       {std::string(), std::string(201, 'x'), std::string("a b"), std::string("a,b"),
        std::string("a\"b"), std::string("a'b"), std::string("a\\b"), std::string("a\tb"),
        std::string("a\x7f"), std::string("caf\xc3\xa9"), std::string("a\0b", 3),
        std::string("a\r\nX-Injected: 1")}) {
    EXPECT_FALSE(is_well_formed_request_id(id)) << id;
  }
}

TEST(RequestId, HeaderNames) {
  EXPECT_EQ(request_id_header_problem("X-Request-Id"), "");
  EXPECT_EQ(request_id_header_problem("X-Correlation-ID"), "");
  EXPECT_EQ(request_id_header_problem("request_id"), "");
  EXPECT_NE(request_id_header_problem(""), "");
  EXPECT_NE(request_id_header_problem("X Request"), "");
  EXPECT_NE(request_id_header_problem("X-Id:"), "");
  EXPECT_NE(request_id_header_problem("X-Id\r\nX-Other"), "");
  for (const char* reserved :
       {"host", "Content-Length", "transfer-encoding", "CONNECTION", "Upgrade", "TE", "Trailer",
        "Keep-Alive", "Proxy-Connection", "Expect", "x-real-ip", "X-Forwarded-For",
        "X-Forwarded-Proto", "X-Forwarded-Protocol", "X-Forwarded-Port", "X-Debug"}) {
    EXPECT_NE(request_id_header_problem(reserved), "") << reserved;
  }
}

TEST(RequestIdGenerator, ThirtyTwoHexDigitsNeverRepeated) {
  RequestIdGenerator ids;
  std::set<std::string> seen;
  std::string id;
  for (int i = 0; i < 100000; ++i) {
    ids.next(id);
    ASSERT_EQ(id.size(), 32U);
    ASSERT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
    ASSERT_TRUE(is_well_formed_request_id(id));
    ASSERT_TRUE(seen.insert(id).second) << "repeated: " << id;
  }
}

TEST(RequestIdGenerator, SeededFromTheKernelPerInstance) {
  // Two generators (two workers) start from different seeds.
  RequestIdGenerator first;
  RequestIdGenerator second;
  std::string a;
  std::string b;
  first.next(a);
  second.next(b);
  EXPECT_NE(a, b);
}

TEST(RequestIdGenerator, SameSeedSameIdsAndZeroSeedWorks) {
  RequestIdGenerator first({1, 2, 3, 4});
  RequestIdGenerator second({1, 2, 3, 4});
  std::string a;
  std::string b;
  for (int i = 0; i < 10; ++i) {
    first.next(a);
    second.next(b);
    EXPECT_EQ(a, b);
  }
  RequestIdGenerator zero({0, 0, 0, 0});
  zero.next(a);
  zero.next(b);
  EXPECT_NE(a, b);
  EXPECT_NE(a, std::string(32, '0'));
}

class TakeRequestId : public ::testing::Test {
 protected:
  Request request;
  RequestIdGenerator ids{{5, 6, 7, 8}};
  std::string id;
};

TEST_F(TakeRequestId, AWellFormedOneIsKeptAndTakenOffTheRequest) {
  request.insert("x-request-id", "abc-123");
  request.insert("Accept", "*/*");
  EXPECT_TRUE(take_request_id(request, "X-Request-Id", ids, id));
  EXPECT_EQ(id, "abc-123");
  EXPECT_EQ(request.count("X-Request-Id"), 0U);  // the caller forwards it
  EXPECT_EQ(request["Accept"], "*/*");
}

TEST_F(TakeRequestId, MissingOneIsMade) {
  EXPECT_FALSE(take_request_id(request, "X-Request-Id", ids, id));
  EXPECT_EQ(id.size(), 32U);
  const std::string first = id;
  EXPECT_FALSE(take_request_id(request, "X-Request-Id", ids, id));
  EXPECT_NE(id, first);
}

TEST_F(TakeRequestId, MalformedOrRepeatedOnesAreReplaced) {
  request.insert("X-Request-Id", "has space");
  EXPECT_FALSE(take_request_id(request, "X-Request-Id", ids, id));
  EXPECT_EQ(id.size(), 32U);
  EXPECT_EQ(request.count("X-Request-Id"), 0U);

  request.insert("X-Request-Id", "one");
  request.insert("X-Request-Id", "two");
  EXPECT_FALSE(take_request_id(request, "X-Request-Id", ids, id));
  EXPECT_NE(id, "one");
  EXPECT_NE(id, "two");
  EXPECT_EQ(request.count("X-Request-Id"), 0U);

  request.insert("X-Request-Id", "");
  EXPECT_FALSE(take_request_id(request, "X-Request-Id", ids, id));
  EXPECT_EQ(id.size(), 32U);
}

}  // namespace
}  // namespace hipache::http
