// The keys of the active health checker (server.activeHealthCheck) and the readers of its
// check request.
#include <algorithm>

#include "config/key_access.hpp"
#include "http/field_value.hpp"

namespace hipache::config {
namespace {

// The check request's method: an HTTP token (RFC 9110 section 5.6.2), as the request line needs.
struct ReadMethod {
  void operator()(const Reader& reader, const json& value, const std::string& key, const Bounds&,
                  std::string& out) const {
    std::string method = reader.string(value, key);
    const auto tchar = [](char c) {
      return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
             std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    };
    if (method.empty() || !std::all_of(method.begin(), method.end(), tchar)) {
      reader.fail(key,
                  "expected an HTTP method such as \"HEAD\" or \"GET\", got " + describe(value));
    }
    out = std::move(method);
  }
};

// The check request's target: an origin-form path, no space or control byte.
struct ReadCheckPath {
  void operator()(const Reader& reader, const json& value, const std::string& key, const Bounds&,
                  std::string& out) const {
    std::string path = reader.string(value, key);
    const auto visible = [](char c) { return static_cast<unsigned char>(c) > 0x20 && c != 0x7f; };
    if (!path.starts_with('/') || !std::all_of(path.begin(), path.end(), visible)) {
      reader.fail(key,
                  "expected a path starting with \"/\" without spaces, got " + describe(value));
    }
    out = std::move(path);
  }
};

// The check request's Host header (null: the frontend's name).
struct ReadCheckHost {
  void operator()(const Reader& reader, const json& value, const std::string& key, const Bounds&,
                  std::optional<std::string>& out) const {
    std::string host = reader.string(value, key);
    if (!http::is_field_value(host)) {
      reader.fail(key, "must not contain control characters, got " + describe(value));
    }
    if (host.empty()) {
      out.reset();
    } else {
      out = std::move(host);
    }
  }
};

using A = ActiveHealthCheckSettings;
constexpr std::string_view kActive = "server.activeHealthCheck";
constexpr Key<A> kActiveHealthCheckKeys[] = {
    Key<A>{kActive, "interval", member<&A::interval_s>, "Seconds between checks."}.within(
        between(0.1, 3600, " seconds")),
    Key<A>{kActive, "timeout", member<&A::timeout_s>, "Seconds a check may take."}.within(
        between(0.1, 3600, " seconds")),
    {kActive, "method", member<&A::method, ReadMethod>, "Method of the check request."},
    {kActive, "path", member<&A::path, ReadCheckPath>, "Path of the check request."},
    {kActive, "host", member<&A::host, ReadCheckHost>, "Host header; null = the frontend."},
    Key<A>{kActive, "maxConcurrent", member<&A::max_concurrent>, "Checks in flight at once."}
        .within(at_least(1)),
    Key<A>{kActive, "maxBackends", member<&A::max_backends>, "Backends checked at once."}.within(
        at_least(1)),
    Key<A>{kActive, "lockTtl", member<&A::lock_ttl_s>, "Seconds an unrenewed lock holds."}.within(
        between(3, 86400, " seconds")),
    Key<A>{kActive, "releaseAfter", member<&A::release_after_s>, "Seconds before letting go."}
        .within(at_least(1)),
};

}  // namespace

std::span<const Key<ActiveHealthCheckSettings>> active_health_check_keys() {
  return kActiveHealthCheckKeys;
}

}  // namespace hipache::config
