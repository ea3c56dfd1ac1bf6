#include "http/fields.hpp"

#include <algorithm>

namespace hipache::http {

namespace {

// The fields every forwarded message loses, whatever its Connection field names.
bool is_fixed_hop_by_hop(bhttp::field name) {
  switch (name) {
    case bhttp::field::connection:
    case bhttp::field::keep_alive:
    case bhttp::field::proxy_connection:
    case bhttp::field::te:
    case bhttp::field::trailer:
    case bhttp::field::upgrade:
    case bhttp::field::content_length:
    case bhttp::field::transfer_encoding:
      return true;
    default:
      return false;
  }
}

}  // namespace

bool allowed_in_trailers(std::string_view name) {
  if (name.empty() || name.front() == ':') return false;
  const auto known = bhttp::string_to_field(name);
  return !is_fixed_hop_by_hop(known) && known != bhttp::field::host;
}

bool forwardable_trailer(std::string_view name, std::string_view value) {
  const auto is_space = [](char c) { return c == ' ' || c == '\t'; };
  return allowed_in_trailers(name) && is_token(name) && is_field_value(value) &&
         (value.empty() || (!is_space(value.front()) && !is_space(value.back())));
}

// At most two passes over the fields, no allocation: the names Connection lists are read in
// place (its fields go last).
void remove_hop_by_hop(MessageFields& fields) {
  // Beast keeps same-named fields together; the one after them may be erased below, so the
  // end of the Connection fields is found by name, not kept as an iterator. (A scan, not
  // find(): Beast's lookup by enum is a case-insensitive tree search by name.)
  const auto is_connection = [](const auto& field) {
    return field.name() == bhttp::field::connection;
  };
  const auto first = std::find_if(fields.begin(), fields.end(), is_connection);
  const auto connection_tokens = [&](auto&& visit) {
    for (auto it = first; it != fields.end() && is_connection(*it); ++it) {
      for (const auto& token : bhttp::token_list(it->value())) {
        if (visit(token)) return true;
      }
    }
    return false;
  };
  const auto named_by_connection = [&](beast::string_view name) {
    return connection_tokens(
        [&](beast::string_view token) { return iequals(to_std(token), to_std(name)); });
  };
  // "Connection: keep-alive" (most answers) names no other field: no pass per field for it.
  // ("close" is an option, but a field of that name would be hop-by-hop too.)
  const bool names_others = connection_tokens([](beast::string_view token) {
    const auto name = bhttp::string_to_field(token);
    return !is_fixed_hop_by_hop(name) && name != bhttp::field::host;
  });
  if (names_others) {
    for (auto it = fields.begin(); it != fields.end();) {
      // Host routes the request: no option of the client's removes it.
      const bool named = it->name() != bhttp::field::connection &&
                         it->name() != bhttp::field::host && named_by_connection(it->name_string());
      it = named ? fields.erase(it) : std::next(it);
    }
  }
  for (auto it = fields.begin(); it != fields.end();) {
    it = is_fixed_hop_by_hop(it->name()) ? fields.erase(it) : std::next(it);
  }
}

RequestFields::RequestFields(const MessageFields& fields) {
  for (const auto& field : fields) {
    ++count;
    switch (field.name()) {
      case bhttp::field::host:
        if (host_count++ == 0) host = field.value();
        break;
      case bhttp::field::content_length:
      case bhttp::field::transfer_encoding:
        framing.add(field.name(), to_std(field.value()));
        break;
      case bhttp::field::expect:
        if (!expect) expect_value = field.value();
        expect = true;
        break;
      case bhttp::field::referer:
        if (referer.empty()) referer = field.value();
        break;
      case bhttp::field::user_agent:
        if (user_agent.empty()) user_agent = field.value();
        break;
      default:
        break;
    }
  }
}

}  // namespace hipache::http
