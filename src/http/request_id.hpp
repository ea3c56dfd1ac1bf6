// Request ids (server.requestIdHeader): a well-formed id that came with the request is kept,
// anything else is replaced by one the proxy makes; the backend, the client and the JSON access
// log all see the same id (docs/configuration.md).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "http/message.hpp"

namespace hipache::http {

// Well formed: 1 to 200 bytes of visible ASCII (0x21-0x7e) except the double quote, the single
// quote, the comma and the backslash. UUIDs, hex, base64 and trace ids ("Root=1-5e...;Sampled=1")
// fit; nothing needs quoting in a log, and no comma can make it a list.
inline constexpr std::size_t kMaxRequestIdLength = 200;
bool is_well_formed_request_id(std::string_view id);

// Why `name` cannot be server.requestIdHeader, or empty when it can: it must be a field-name token
// (RFC 9110 section 5.1) and none that framing, routing or hop-by-hop handling reads.
std::string_view request_id_header_problem(std::string_view name);

// 128-bit ids written as 32 lowercase hex digits, from xoshiro256** seeded once from the kernel
// (getrandom): no system call per id, and with 256 random bits of seed per worker two ids repeat
// with a chance of about n^2 / 2^129 for n ids.
class RequestIdGenerator {
 public:
  RequestIdGenerator();  // seeded from getrandom(2)
  explicit RequestIdGenerator(const std::array<std::uint64_t, 4>& seed);

  // Replaces `out` with a new id.
  void next(std::string& out);

 private:
  std::uint64_t next64();

  std::array<std::uint64_t, 4> state_{};
};

// The request's id, into `out`: its own `name` field when it has exactly one and that is well
// formed (returns true), otherwise a new id (returns false). Either way every `name` field is
// removed from the request: the caller adds `out` to what goes to the backend.
bool take_request_id(Request& request, std::string_view name, RequestIdGenerator& ids,
                     std::string& out);

}  // namespace hipache::http
