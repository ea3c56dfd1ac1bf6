// Header fields on their way into nghttp2: names lowercased as HTTP/2 wants them, names and
// values in one buffer, handed over as the nghttp2_nv list that nghttp2 copies on submit. And
// the header an HTTP/2 backend gets for a request (proxy/h2_backend_attempt.cpp).
#pragma once

#include <nghttp2/nghttp2.h>

#include <boost/container/small_vector.hpp>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include "http/framing.hpp"
#include "http/message.hpp"
#include "http/serialize.hpp"

namespace hipache::http {

class H2FieldBlock {
 public:
  // Room for a usual answer's header without an allocation per field.
  static constexpr std::size_t kInlineFields = 16;
  using List = boost::container::small_vector<nghttp2_nv, kInlineFields>;

  void add(std::string_view name, std::string_view value);
  void clear();
  bool empty() const { return ends_.empty(); }
  std::size_t bytes() const { return text_.size(); }
  // Valid until the next add() or clear().
  List list();

 private:
  std::string text_;
  // name end, value end
  boost::container::small_vector<std::pair<std::size_t, std::size_t>, kInlineFields> ends_;
};

// The request as an HTTP/2 backend gets it: :method, :scheme (https for h2:// backends),
// :authority (the Host field), :path, then the fields but Host and the hop-by-hop and framing
// ones (RFC 9113 section 8.2.2), the added X-Forwarded-* fields, content-length when `framing`
// has one, and `te: trailers`.
void add_backend_request_fields(const Request& request, const AddedFields& added,
                                const Framing& framing, bool tls, H2FieldBlock& out);

}  // namespace hipache::http
