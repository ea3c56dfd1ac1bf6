// The request target's form (http/target.hpp): which absolute-form targets are routed by their
// authority, what Host and path they become, and which are refused; and the ASCII comparison
// it uses.
#include "http/target.hpp"

#include <gtest/gtest.h>

#include <string>

#include "http/ascii.hpp"

namespace hipache::http {
namespace {

struct TargetRow {
  const char* target;
  TargetForm form;
  const char* host;
  const char* path;
};

constexpr auto kOther = TargetForm::other;
constexpr auto kAbsolute = TargetForm::absolute;
constexpr auto kInvalid = TargetForm::invalid;

// RFC 9112 section 3.2
constexpr TargetRow kRows[] = {
    // origin-form, asterisk-form and authority-form are forwarded as they are
    TargetRow{"/", kOther, "", ""}, TargetRow{"/a?b=c", kOther, "", ""},
    TargetRow{"*", kOther, "", ""}, TargetRow{"example.test:443", kOther, "", ""},
    TargetRow{"ftp://example.test/", kOther, "", ""}, TargetRow{"http:/x", kOther, "", ""},
    // absolute-form: the authority becomes Host, the backend gets origin-form
    TargetRow{"http://example.test/a/b?c=d", kAbsolute, "example.test", "/a/b?c=d"},
    TargetRow{"HTTPS://Example.Test:8443", kAbsolute, "Example.Test:8443", "/"},
    TargetRow{"http://example.test?q", kAbsolute, "example.test", "/?q"},
    TargetRow{"http://[::1]:8080/x", kAbsolute, "[::1]:8080", "/x"},
    TargetRow{"http://example.test:/x", kAbsolute, "example.test:", "/x"},
    // userinfo is never forwarded
    TargetRow{"http://user:secret@example.test/x", kAbsolute, "example.test", "/x"},
    // not an RFC 3986 absolute-URI with a host, or a port that is not one
    TargetRow{"http://", kInvalid, "", ""}, TargetRow{"http:///x", kInvalid, "", ""},
    TargetRow{"http://h:8x/", kInvalid, "", ""}, TargetRow{"http://h:65536/", kInvalid, "", ""},
    TargetRow{"http://h/a#frag", kInvalid, "", ""}, TargetRow{"http://h/a b", kInvalid, "", ""},
    TargetRow{"http://h\r\nX: y/", kInvalid, "", ""}, TargetRow{"http://a@b@c/", kInvalid, "", ""}};

TEST(RequestTarget, FormHostAndPath) {
  for (const auto& row : kRows) {
    const auto target = read_request_target(row.target);
    EXPECT_EQ(target.form, row.form) << row.target;
    EXPECT_EQ(target.host, row.host) << row.target;
    EXPECT_EQ(target.path, row.path) << row.target;
  }
}

// Our case-insensitive comparison (http/ascii.hpp), which replaced Beast's.
TEST(AsciiCompare, CaseOnlyForLetters) {
  static_assert(iequals("HTTP://", "http://") && iequals("", ""));
  static_assert(!iequals("http", "https") && !iequals("@", "`") && !iequals("[", "{"));
  static_assert(starts_with_ignoring_case("HtTpS://x", "https://"));
  static_assert(!starts_with_ignoring_case("http", "http://"));
  EXPECT_TRUE(iequals(std::string("Chunked"), "chunked"));
}

}  // namespace
}  // namespace hipache::http
