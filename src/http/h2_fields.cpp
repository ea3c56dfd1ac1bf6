#include "http/h2_fields.hpp"

#include "http/ascii.hpp"
#include "http/fields.hpp"

namespace hipache::http {

void H2FieldBlock::add(std::string_view name, std::string_view value) {
  if (text_.capacity() < 512) text_.reserve(512);  // one allocation for a usual header
  const auto name_start = text_.size();
  text_ += name;  // then lower-cased in place: one append, not one per character
  for (auto i = name_start; i < text_.size(); ++i) text_[i] = ascii_lower(text_[i]);
  const auto name_end = text_.size();
  text_ += value;
  ends_.emplace_back(name_end, text_.size());
}

void H2FieldBlock::clear() {
  text_.clear();
  ends_.clear();
}

H2FieldBlock::List H2FieldBlock::list() {
  List fields;
  fields.reserve(ends_.size());
  std::size_t start = 0;
  auto* const text = reinterpret_cast<std::uint8_t*>(text_.data());
  for (const auto& [name_end, value_end] : ends_) {
    fields.push_back({text + start, text + name_end, name_end - start, value_end - name_end,
                      NGHTTP2_NV_FLAG_NONE});
    start = value_end;
  }
  return fields;
}

void add_backend_request_fields(const Request& request, const AddedFields& added,
                                const Framing& framing, bool tls, H2FieldBlock& out) {
  out.add(":method", to_std(request.method_string()));
  out.add(":scheme", tls ? "https" : "http");
  out.add(":authority", to_std(request[bhttp::field::host]));
  out.add(":path", to_std(request.target()));
  for (const auto& field : request) {
    // (The fields a trailer section may not carry are the ones a header block here may not.)
    if (field.name() == bhttp::field::host || !allowed_in_trailers(to_std(field.name_string()))) {
      continue;
    }
    out.add(to_std(field.name_string()), to_std(field.value()));
  }
  for (const auto& [name, value] : added) out.add(name, value);
  if (framing.framing == BodyFraming::content_length) {
    out.add("content-length", std::to_string(framing.length));
  }
  out.add("te", "trailers");  // we pass trailers on (gRPC servers check that a proxy does)
}

}  // namespace hipache::http
