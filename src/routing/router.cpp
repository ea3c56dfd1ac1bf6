#include "hipache/router.hpp"

#include <algorithm>

namespace hipache {

std::string normalize_host(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    // IPv6 literal: keep up to the closing bracket, drop any ":port" after it.
    const auto close = host.find(']');
    host = close == std::string_view::npos ? host : host.substr(0, close + 1);
  } else if (const auto colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  std::string out(host);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
    return static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
  });
  return out;
}

std::vector<std::string> host_candidates(const std::string& host) {
  constexpr int kMaxWildcardLabels = 5;
  std::vector<std::string> out;
  out.reserve(kMaxWildcardLabels + 2);
  out.push_back(host);
  // Start positions of the last 1..5 labels, collected from the right.
  std::vector<std::size_t> starts;
  for (std::size_t end = host.size(); starts.size() < kMaxWildcardLabels;) {
    const auto dot = host.rfind('.', end == 0 ? 0 : end - 1);
    if (dot == std::string::npos || end == 0) break;
    starts.push_back(dot + 1);
    end = dot;
  }
  // starts[i] begins the suffix of i+1 labels; each is shorter than the host (a dot precedes it).
  for (auto it = starts.rbegin(); it != starts.rend(); ++it) {
    out.push_back("*." + host.substr(*it));
  }
  if (host != "*") out.emplace_back("*");
  return out;
}

}  // namespace hipache
