// Header fields on their way into nghttp2: names lowercased as HTTP/2 wants them, names and
// values in one buffer, handed over as the nghttp2_nv list that nghttp2 copies on submit. And
// the header an HTTP/2 backend gets for a request (proxy/h2_backend_attempt.cpp).
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/framing.hpp"
#include "http/message.hpp"
#include "http/serialize.hpp"

namespace hipache::http {

class H2FieldBlock {
 public:
  void add(std::string_view name, std::string_view value);
  void clear();
  bool empty() const { return ends_.empty(); }
  std::size_t bytes() const { return text_.size(); }
  // Valid until the next add() or clear().
  std::vector<nghttp2_nv> list();

 private:
  std::string text_;
  std::vector<std::pair<std::size_t, std::size_t>> ends_;  // name end, value end
};

// The request as an HTTP/2 backend gets it: :method, :scheme (https for h2:// backends),
// :authority (the Host field), :path, then the fields but Host and the hop-by-hop and framing
// ones (RFC 9113 section 8.2.2), the added X-Forwarded-* fields, content-length when `framing`
// has one, and `te: trailers`.
void add_backend_request_fields(const Request& request, const AddedFields& added,
                                const Framing& framing, bool tls, H2FieldBlock& out);

}  // namespace hipache::http
