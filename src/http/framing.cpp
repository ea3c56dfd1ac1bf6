#include "http/framing.hpp"

#include <charconv>

#include "http/ascii.hpp"

namespace hipache::http {

namespace {

bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

// Calls visit(element) for each non-empty element of a comma-separated list (RFC 9110 section
// 5.6.1: empty elements are ignored); stops early when visit returns false.
template <class Visit>
void for_each_element(std::string_view list, Visit&& visit) {
  for (;;) {
    const auto comma = list.find(',');
    const auto element = trim(list.substr(0, comma));
    if (!element.empty() && !visit(element)) return;
    if (comma == std::string_view::npos) return;
    list.remove_prefix(comma + 1);
  }
}

std::optional<std::uint64_t> parse_decimal(std::string_view digits) {
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos) {
    return std::nullopt;
  }
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return value;
}

Framing refuse(FramingError error) {
  return Framing{error, BodyFraming::none, 0, false};
}

// The rules both directions share: a Transfer-Encoding must be exactly `chunked`, in HTTP/1.1,
// without a Content-Length; a Content-Length must be one valid number.
FramingError check_common(const FramingFields& fields, unsigned version) {
  if (fields.has_transfer_encoding()) {
    if (version < 11) return FramingError::transfer_encoding_in_http10;
    if (fields.has_content_length()) return FramingError::transfer_encoding_and_length;
    if (fields.codings != 1 || !fields.only_chunked) {
      return FramingError::transfer_coding_not_chunked;
    }
  }
  if (fields.has_content_length() && (!fields.content_length_valid || !fields.content_length)) {
    return FramingError::content_length_invalid;
  }
  return FramingError::none;
}

}  // namespace

void FramingFields::add(bhttp::field name, std::string_view value) {
  if (name == bhttp::field::transfer_encoding) {
    ++transfer_encoding_fields;
    for_each_element(value, [this](std::string_view coding) {
      ++codings;
      only_chunked = only_chunked && iequals(coding, "chunked");
      return true;
    });
  } else if (name == bhttp::field::content_length) {
    ++content_length_fields;
    std::size_t elements = 0;
    for_each_element(value, [&](std::string_view element) {
      ++elements;
      const auto number = parse_decimal(element);
      if (!number || (content_length && *content_length != *number)) {
        content_length_valid = false;
      } else {
        content_length = number;
      }
      return true;
    });
    content_length_values += elements;
    if (elements == 0) content_length_valid = false;  // "Content-Length: " or ","
  }
}

FramingFields read_framing_fields(const MessageFields& fields) {
  FramingFields framing;
  for (const auto& field : fields) framing.add(field.name(), to_std(field.value()));
  return framing;
}

std::string_view describe(FramingError error) {
  switch (error) {
    case FramingError::none:
      return "valid framing";
    case FramingError::transfer_coding_not_chunked:
      return "Transfer-Encoding other than chunked";
    case FramingError::transfer_encoding_in_http10:
      return "Transfer-Encoding in an HTTP/1.0 message";
    case FramingError::transfer_encoding_and_length:
      return "Transfer-Encoding with Content-Length";
    case FramingError::content_length_repeated:
      return "repeated Content-Length";
    case FramingError::content_length_invalid:
      return "invalid Content-Length";
    case FramingError::parser_disagrees:
      return "ambiguous framing";
  }
  return "invalid framing";
}

Framing request_framing(const FramingFields& fields, unsigned version,
                        const ParsedFraming& parsed) {
  if (const auto error = check_common(fields, version); error != FramingError::none) {
    return refuse(error);
  }
  // Legal when identical (RFC 9110 section 8.6), but a next hop may read them otherwise; as nginx.
  if (fields.content_length_fields > 1 || fields.content_length_values > 1) {
    return refuse(FramingError::content_length_repeated);
  }
  Framing result;
  if (version >= 20) {
    // HTTP/2 (RFC 9113 section 8.1): the stream's end delimits the body, which a Content-Length
    // may announce (the HTTP/2 layer checks the two agree); forwarded in our chunked encoding
    // when it does not. Transfer-Encoding has no place in it.
    if (fields.has_transfer_encoding()) return refuse(FramingError::transfer_coding_not_chunked);
    if (fields.has_content_length()) {
      const auto length = *fields.content_length;
      if (parsed.body != (length > 0)) return refuse(FramingError::parser_disagrees);
      return {FramingError::none, BodyFraming::content_length, length, length > 0};
    }
    if (parsed.body) result = {FramingError::none, BodyFraming::chunked, 0, true};
    return result;
  }
  if (fields.has_transfer_encoding()) {
    result = {FramingError::none, BodyFraming::chunked, 0, true};
    if (!parsed.chunked || !parsed.body) return refuse(FramingError::parser_disagrees);
  } else if (fields.has_content_length()) {
    const auto length = *fields.content_length;
    result = {FramingError::none, BodyFraming::content_length, length, length > 0};
    if (parsed.chunked || parsed.content_length != length || parsed.body != (length > 0)) {
      return refuse(FramingError::parser_disagrees);
    }
  } else if (parsed.chunked || parsed.content_length || parsed.body) {
    return refuse(FramingError::parser_disagrees);  // a request without framing has no body
  }
  return result;
}

Framing response_framing(const FramingFields& fields, const ResponseContext& context,
                         const ParsedFraming& parsed) {
  if (const auto error = check_common(fields, context.version); error != FramingError::none) {
    return refuse(error);
  }
  const unsigned status = context.status;
  const bool no_body = status < 200 || status == 204 || status == 304 || context.head_request;
  Framing result;
  if (no_body) {
    // A 304 or an answer to HEAD may state the length a GET would get (RFC 9110 section 8.6);
    // 1xx and 204 never carry one. None carries a Transfer-Encoding: that would announce a body.
    const bool states_length = (status == 304 || context.head_request) && status >= 200 &&
                               status != 204 && fields.has_content_length();
    if (states_length)
      result = {FramingError::none, BodyFraming::content_length, *fields.content_length, false};
    if (parsed.body) return refuse(FramingError::parser_disagrees);
    return result;
  }
  const bool client_chunks = context.client_version >= 11;
  if (fields.has_transfer_encoding()) {
    if (!parsed.chunked || !parsed.body) return refuse(FramingError::parser_disagrees);
    result.framing = client_chunks ? BodyFraming::chunked : BodyFraming::close;
    result.body = true;
  } else if (fields.has_content_length()) {
    const auto length = *fields.content_length;
    if (parsed.chunked || parsed.content_length != length || parsed.body != (length > 0)) {
      return refuse(FramingError::parser_disagrees);
    }
    result = {FramingError::none, BodyFraming::content_length, length, length > 0};
  } else {
    // Delimited by the backend's close: re-chunked for HTTP/1.1 clients.
    if (parsed.chunked || parsed.content_length || !parsed.body) {
      return refuse(FramingError::parser_disagrees);
    }
    result.framing = client_chunks ? BodyFraming::chunked : BodyFraming::close;
    result.body = true;
  }
  return result;
}

bool upgrade_matches(std::string_view offered, std::string_view chosen) {
  bool any = false;
  bool all_offered = true;
  for_each_element(chosen, [&](std::string_view protocol) {
    any = true;
    bool found = false;
    for_each_element(offered, [&](std::string_view candidate) {
      found = iequals(candidate, protocol);
      return !found;
    });
    all_offered = found;
    return found;
  });
  return any && all_offered;
}

std::optional<std::size_t> reasonless_status_line(std::string_view start) {
  // "HTTP/1.x ddd" CRLF: the space after the status code is missing.
  constexpr std::size_t kLength = 14;
  constexpr std::size_t kSpaceAt = 12;
  if (start.size() < kLength || start.substr(0, 7) != "HTTP/1.") return std::nullopt;
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (!digit(start[7]) || start[8] != ' ' || !digit(start[9]) || !digit(start[10]) ||
      !digit(start[11]) || start[12] != '\r' || start[13] != '\n') {
    return std::nullopt;
  }
  return kSpaceAt;
}

}  // namespace hipache::http
