#include "http/request_id.hpp"

#include <sys/random.h>

#include <bit>
#include <cerrno>
#include <chrono>
#include <random>

#include "http/ascii.hpp"
#include "http/field_value.hpp"

namespace hipache::http {

namespace {

constexpr bool is_id_byte(char c) {
  return c > 0x20 && c < 0x7f && c != '"' && c != '\'' && c != ',' && c != '\\';
}

// Fields the proxy itself reads, adds or rewrites for framing, routing, the connection, the
// forwarded client address and X-Debug.
constexpr std::string_view kReservedFields[] = {"Host",
                                                "Content-Length",
                                                "Transfer-Encoding",
                                                "Connection",
                                                "Keep-Alive",
                                                "Proxy-Connection",
                                                "TE",
                                                "Trailer",
                                                "Upgrade",
                                                "Expect",
                                                "X-Forwarded-For",
                                                "X-Real-IP",
                                                "X-Forwarded-Proto",
                                                "X-Forwarded-Protocol",
                                                "X-Forwarded-Port",
                                                "X-Debug"};

// Only when getrandom(2) fails (kernels before 3.17): a weaker seed is still a working one.
std::array<std::uint64_t, 4> fallback_seed() {
  std::random_device device;
  std::array<std::uint64_t, 4> seed{};
  for (auto& word : seed) word = (std::uint64_t{device()} << 32) ^ device();
  seed[0] ^= static_cast<std::uint64_t>(
      std::chrono::high_resolution_clock::now().time_since_epoch().count());
  return seed;
}

std::array<std::uint64_t, 4> kernel_seed() {
  std::array<std::uint64_t, 4> seed{};
  auto* bytes = reinterpret_cast<unsigned char*>(seed.data());
  std::size_t done = 0;
  while (done < sizeof seed) {
    const auto n = ::getrandom(bytes + done, sizeof seed - done, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fallback_seed();
    done += static_cast<std::size_t>(n);
  }
  return seed;
}

}  // namespace

bool is_well_formed_request_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxRequestIdLength) return false;
  for (const char c : id) {
    if (!is_id_byte(c)) return false;
  }
  return true;
}

std::string_view request_id_header_problem(std::string_view name) {
  if (name.empty()) return "must not be empty (use null to turn request ids off)";
  for (const char c : name) {
    if (!is_token_byte(c)) return "is not a header field name (letters, digits, -_.!#$%&'*+^`|~)";
  }
  for (const auto reserved : kReservedFields) {
    if (iequals(name, reserved)) return "names a field the proxy itself reads, adds or rewrites";
  }
  return {};
}

RequestIdGenerator::RequestIdGenerator() : RequestIdGenerator(kernel_seed()) {}

RequestIdGenerator::RequestIdGenerator(const std::array<std::uint64_t, 4>& seed) : state_(seed) {
  // xoshiro's one bad state: all zero stays all zero.
  if (state_ == std::array<std::uint64_t, 4>{}) state_[0] = 1;
}

// xoshiro256** (Blackman and Vigna, 2018).
std::uint64_t RequestIdGenerator::next64() {
  const std::uint64_t result = std::rotl(state_[1] * 5, 7) * 9;
  const std::uint64_t shifted = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= shifted;
  state_[3] = std::rotl(state_[3], 45);
  return result;
}

void RequestIdGenerator::next(std::string& out) {
  constexpr std::string_view kHex = "0123456789abcdef";
  out.resize(32);
  for (std::size_t half = 0; half < 2; ++half) {
    std::uint64_t bits = next64();
    for (std::size_t i = 0; i < 16; ++i, bits >>= 4) out[half * 16 + i] = kHex[bits & 0xf];
  }
}

bool take_request_id(Request& request, std::string_view name, RequestIdGenerator& ids,
                     std::string& out) {
  const auto first = request.find(name);
  const bool kept = first != request.end() && request.count(name) == 1 &&
                    is_well_formed_request_id(to_std(first->value()));
  if (kept) {
    out.assign(to_std(first->value()));
  } else {
    ids.next(out);
  }
  // Forwarded by the caller, after the fields that remove_hop_by_hop() may drop (a client's
  // "Connection: X-Request-Id" would otherwise take the id away from the backend).
  if (first != request.end()) request.erase(name);
  return kept;
}

}  // namespace hipache::http
