// Header field handling on the request path: what a request's header holds (one pass), and the
// fields no message keeps when it is forwarded.
#pragma once

#include <array>
#include <bitset>
#include <string_view>

#include "http/ascii.hpp"
#include "http/field_value.hpp"
#include "http/framing.hpp"
#include "http/message.hpp"

namespace hipache::http {

// Removes what is not forwarded (RFC 9110 section 7.6.1): Connection and the fields it names, the
// fixed hop-by-hop set (Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade), and the framing
// fields Content-Length and Transfer-Encoding, which the forwarded message gets from us. A
// Connection option can never remove Host.
void remove_hop_by_hop(MessageFields& fields);

// Whether a trailer field of a backend's answer may be forwarded: none of the fixed hop-by-hop
// or framing fields above, no Host, no pseudo-header.
bool allowed_in_trailers(std::string_view name);

// Whether a received trailer field goes on to the next hop: allowed_in_trailers(), a name that
// is a token and a value of field-value bytes without leading or trailing whitespace, so that
// the next hop reads it as we did (no CR, LF or NUL ever starts a line of its own).
bool forwardable_trailer(std::string_view name, std::string_view value);

// What the request path checks in a request's header, found in one pass over its fields: Beast
// looks a field up by name with a case-insensitive tree search, even by enum (a visible share of
// a small request's CPU). The views are valid until the request's fields change.
struct RequestFields {
  std::size_t count = 0;
  std::size_t host_count = 0;
  bool expect = false;
  beast::string_view host;          // the first Host
  beast::string_view expect_value;  // the first Expect
  beast::string_view referer;       // the first Referer, for the access log
  beast::string_view user_agent;    // the first User-Agent, for the access log
  FramingFields framing;

  explicit RequestFields(const MessageFields& fields);
};

// Bit i set: `fields` has a field named names[i], a name Beast's field enum does not know. One
// pass over the fields (a request has a handful) instead of a case-insensitive tree search per
// name.
template <std::size_t N>
std::bitset<N> find_unknown_fields(const MessageFields& fields,
                                   const std::array<std::string_view, N>& names) {
  std::bitset<N> present;
  for (const auto& field : fields) {
    if (field.name() != bhttp::field::unknown) continue;
    const auto name = to_std(field.name_string());
    for (std::size_t i = 0; i < N; ++i) {
      if (name.size() == names[i].size() && iequals(name, names[i])) present[i] = true;
    }
  }
  return present;
}

}  // namespace hipache::http
