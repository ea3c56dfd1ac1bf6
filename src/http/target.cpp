#include "http/target.hpp"

#include <boost/url/parse.hpp>

#include "hipache/route.hpp"
#include "http/ascii.hpp"

namespace hipache::http {

RequestTarget read_request_target(std::string_view target) {
  RequestTarget result;
  if (!starts_with_ignoring_case(target, "http://") &&
      !starts_with_ignoring_case(target, "https://")) {
    return result;  // origin-form (or "*" / authority-form): nothing to do
  }
  result.form = TargetForm::invalid;
  // Parsed strictly (RFC 3986 absolute-URI): this target is client input that becomes our Host.
  // Boost.URL 1.81 reads "http://h:8x/" as port 8 and path "x/": the port and the path's
  // first byte are checked here as well.
  const auto uri = boost::urls::parse_absolute_uri(target);
  if (!uri || uri->encoded_host().empty()) return result;
  if (uri->has_port() && !uri->port().empty() && !parse_port(uri->port())) return result;
  const auto encoded_path = uri->encoded_path();
  if (!encoded_path.empty() && encoded_path.front() != '/') return result;
  result.path = encoded_path.empty() ? std::string("/")
                                     : std::string(encoded_path.data(), encoded_path.size());
  if (uri->has_query()) {
    result.path += '?';
    result.path += uri->encoded_query();
  }
  // The userinfo, if any, is dropped: the Host is host and port only.
  const auto authority = uri->encoded_host_and_port();
  result.host.assign(authority.data(), authority.size());
  result.form = TargetForm::absolute;
  return result;
}

}  // namespace hipache::http
