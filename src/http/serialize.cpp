#include "http/serialize.hpp"

#include "http/fields.hpp"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cstring>

namespace hipache::http {

namespace {

// A typical header fits: one allocation per session, not one per doubling.
constexpr std::size_t kHeaderReserve = 1024;

// The framing field of the forwarded message, formatted into `storage`.
std::pair<std::string_view, std::string_view> framing_field(const Framing& framing,
                                                            std::array<char, 24>& storage) {
  switch (framing.framing) {
    case BodyFraming::content_length: {
      const auto [end, ec] =
          std::to_chars(storage.data(), storage.data() + storage.size(), framing.length);
      return {"Content-Length",
              std::string_view(storage.data(), static_cast<std::size_t>(end - storage.data()))};
    }
    case BodyFraming::chunked:
      return {"Transfer-Encoding", "chunked"};
    case BodyFraming::none:
    case BodyFraming::close:
      break;
  }
  return {};
}

// "name: value\r\n" lines, then the blank line. The size is counted first and the bytes copied
// in place: four appends per field, each checking the capacity, cost more than the copying.
void append_fields(const MessageFields& fields, const AddedFields& added, const Framing& framing,
                   std::string& out) {
  std::array<char, 24> storage{};
  const auto framing_line = framing_field(framing, storage);
  constexpr std::size_t kFraming = 4;  // ": " and CRLF
  std::size_t size = 2;                // the final CRLF
  for (const auto& field : fields) {
    size += field.name_string().size() + field.value().size() + kFraming;
  }
  for (const auto& [name, value] : added) size += name.size() + value.size() + kFraming;
  if (!framing_line.first.empty()) {
    size += framing_line.first.size() + framing_line.second.size() + kFraming;
  }
  const auto start = out.size();
  out.resize(start + size);
  char* cursor = out.data() + start;
  const auto put = [&cursor](std::string_view bytes) {
    std::memcpy(cursor, bytes.data(), bytes.size());
    cursor += bytes.size();
  };
  const auto put_field = [&put](std::string_view name, std::string_view value) {
    put(name);
    put(": ");
    put(value);
    put("\r\n");
  };
  for (const auto& field : fields) put_field(to_std(field.name_string()), to_std(field.value()));
  for (const auto& [name, value] : added) put_field(name, value);
  if (!framing_line.first.empty()) put_field(framing_line.first, framing_line.second);
  put("\r\n");
}

}  // namespace

void serialize_header(const Request& request, const AddedFields& added, const Framing& framing,
                      std::string& out) {
  out.clear();
  out.reserve(kHeaderReserve);
  out.append(request.method_string());
  out.push_back(' ');
  out.append(request.target());
  out.append(request.version() == 10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
  append_fields(request, added, framing, out);
}

void serialize_header(const Response& response, const Framing& framing, std::string& out) {
  const unsigned status = response.result_int();
  out.clear();
  out.reserve(kHeaderReserve);
  out.append(response.version() == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
  out.push_back(static_cast<char>('0' + status / 100 % 10));
  out.push_back(static_cast<char>('0' + status / 10 % 10));
  out.push_back(static_cast<char>('0' + status % 10));
  out.push_back(' ');
  // Beast gives an empty reason as the standard one, and a code it does not know a
  // placeholder: that becomes an empty reason phrase, which the grammar allows.
  const auto reason = response.reason();
  if (bhttp::int_to_status(status) != bhttp::status::unknown ||
      reason != bhttp::obsolete_reason(response.result())) {
    out.append(reason);
  }
  out.append("\r\n");
  append_fields(response, AddedFields{}, framing, out);
}

std::string_view BodyEncoder::prefix(std::size_t size) {
  if (!chunked_ || size == 0) return {};
  auto* const first = size_line_.data();
  auto [end, ec] = std::to_chars(first, first + size_line_.size() - 2, size, 16);
  assert(ec == std::errc{});  // 16 hex digits hold any size_t
  *end++ = '\r';
  *end++ = '\n';
  return {first, static_cast<std::size_t>(end - first)};
}

std::string_view BodyEncoder::suffix(std::size_t size, bool last) const {
  if (!chunked_) return {};
  if (last && !end_.empty())
    return size > 0 ? std::string_view(end_) : std::string_view(end_).substr(2);
  constexpr std::string_view kPieceAndLast = "\r\n0\r\n\r\n";
  if (size > 0) return last ? kPieceAndLast : kPieceAndLast.substr(0, 2);
  return last ? kPieceAndLast.substr(2) : std::string_view();
}

std::string last_chunk_with_trailers(
    std::span<const std::pair<std::string, std::string>> trailers) {
  std::string end = "0\r\n";
  for (const auto& [name, value] : trailers) {
    if (forwardable_trailer(name, value))
      end.append(name).append(": ").append(value).append("\r\n");
  }
  end += "\r\n";
  return end;
}

void BodyEncoder::end_with_trailers(std::span<const std::pair<std::string, std::string>> trailers) {
  end_.clear();
  const bool any = std::any_of(trailers.begin(), trailers.end(), [](const auto& field) {
    return forwardable_trailer(field.first, field.second);
  });
  if (chunked_ && any) end_ = "\r\n" + last_chunk_with_trailers(trailers);
}

}  // namespace hipache::http
