// The payload a proxy publishes on the `dead` channel when it marks a backend dead (SPEC section 6,
// the format hipache-hchecker reads): "<frontend>;<backend url>;<index>;<backend count>". Pure
// code: unit-tested (tests/unit/dead_message_test.cpp) and fuzzed (fuzz_dead_message), since
// anyone who can PUBLISH on the Redis server writes these bytes.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace hipache::health {

struct DeadMessage {
  std::string frontend;     // the normalised host the proxy served (maybe matched by a wildcard)
  std::string backend_url;  // as stored in the frontend list
  std::size_t index = 0;    // 0-based, not counting the identifier
  std::size_t count = 0;    // backends of the frontend when it was marked
};

// A frontend name or URL longer than this is no real one (a host name has at most 253 bytes).
inline constexpr std::size_t kMaxDeadMessageField = 4096;

// The message, or nullopt when `payload` is not one worth checking: not four fields, an index
// or count that is not a plain decimal number, an index outside the count, a single backend
// (Hipache never marks those; hchecker ignores them), an empty, over-long or not visible-ASCII
// frontend, or a backend URL that does not parse. The URL may itself hold ';' (in its path): the
// frontend ends at the first ';', the count and index are the last two fields.
std::optional<DeadMessage> parse_dead_message(std::string_view payload);

}  // namespace hipache::health
