#include "http/trailers.hpp"

#include <algorithm>

#include "http/fields.hpp"
#include "http/read.hpp"

namespace hipache::http {

void TrailerSection::remember(const MessageFields& fields) {
  chunked_ = true;
  header_.clear();
  for (const auto& field : fields) header_.push_back(&field);
  std::sort(header_.begin(), header_.end());
}

boost::system::error_code TrailerSection::take(MessageFields& fields, FieldList& out) const {
  out.clear();
  if (!chunked_) return {};
  std::size_t bytes = 0;
  for (auto it = fields.begin(); it != fields.end();) {
    if (std::binary_search(header_.begin(), header_.end(), static_cast<const void*>(&*it))) {
      ++it;
      continue;
    }
    const auto name = to_std(it->name_string());
    const auto value = to_std(it->value());
    bytes += name.size() + value.size() + 32;
    if (forwardable_trailer(name, value)) out.emplace_back(name, value);
    it = fields.erase(it);
  }
  if (bytes > kHeaderLimit) {
    out.clear();
    return bhttp::error::header_limit;
  }
  return {};
}

}  // namespace hipache::http
