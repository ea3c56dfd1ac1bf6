// The request target's form (RFC 9112 section 3.2): an absolute-form target
// ("GET http://host:port/path HTTP/1.1") is routed by its authority, which becomes the Host we
// forward, and the backend gets the origin-form path. Pure code: unit-tested
// (tests/unit/target_test.cpp) and fuzzed (fuzz_request).
#pragma once

#include <string>
#include <string_view>

namespace hipache::http {

enum class TargetForm {
  other,     // origin-form, "*" or authority-form: forwarded as it is
  absolute,  // http:// or https:// with a valid authority: host and path below
  invalid,   // http:// or https:// but not an RFC 3986 absolute-URI with a host and port
};

struct RequestTarget {
  TargetForm form = TargetForm::other;
  std::string host;  // "host" or "host:port", never userinfo (absolute form only)
  std::string path;  // origin-form: "/" at least, with the query (absolute form only)
};

RequestTarget read_request_target(std::string_view target);

}  // namespace hipache::http
