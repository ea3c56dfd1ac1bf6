// Fuzz target: the access-log formats and request ids, with client-chosen bytes in every text
// field. The JSON line must parse (nlohmann) as an object of exactly the 15 fields, every valid
// UTF-8 text reading back unchanged; the Hipache line must stay one line with exactly its four
// quoted fields and a remote field without spaces. A request id field is kept exactly when it is
// well formed, and the id that goes on always is.
#include <fuzzer/FuzzedDataProvider.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "http/request_id.hpp"
#include "log/access_log.hpp"

namespace {

using nlohmann::json;

// A broken invariant: which one, then the crash libFuzzer records.
#define CHECK(condition)                                                             \
  do {                                                                               \
    if (!(condition)) {                                                              \
      std::fprintf(stderr, "fuzz_access_log: %s (line %d)\n", #condition, __LINE__); \
      __builtin_trap();                                                              \
    }                                                                                \
  } while (false)

bool is_utf8(const std::string& text) {
  try {
    (void)json(text).dump();
    return true;
  } catch (const json::type_error&) {
    return false;
  }
}

// Quotes not escaped by a backslash, and whether a space comes before the first of them.
std::size_t unescaped_quotes(const std::string& line) {
  std::size_t count = 0;
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '\\') {
      ++i;
    } else if (line[i] == '"') {
      ++count;
    }
  }
  return count;
}

void check_formats(const hipache::log::AccessLogEntry& entry,
                   const std::array<std::string, 7>& texts) {
  std::string line;
  hipache::log::format_access_json(entry, line);
  CHECK(!line.empty() && line.find('\n') == line.size() - 1);
  json object;
  try {
    object = json::parse(line);
  } catch (const json::exception&) {
    CHECK(false && "not JSON");
  }
  CHECK(object.is_object() && object.size() == 15);
  const std::array<const char*, 7> fields = {"method",     "url",     "referer", "user_agent",
                                             "request_id", "backend", "vhost"};
  for (std::size_t i = 0; i < fields.size(); ++i) {
    const json& value = object[fields[i]];
    if (value.is_null()) {
      CHECK(texts[i].empty() || texts[i] == "-");
      continue;
    }
    CHECK(value.is_string());
    CHECK(!is_utf8(texts[i]) || value.get<std::string>() == texts[i]);
  }

  line.clear();
  hipache::log::format_access_line(entry, line);
  CHECK(line.find('\n') == line.size() - 1);
  CHECK(unescaped_quotes(line) == 8);
  CHECK(line.find(' ') == line.find(" - - ["));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider input(data, size);
  std::array<std::string, 7> texts;
  for (auto& text : texts) text = input.ConsumeRandomLengthString(300);
  const std::string remote = input.ConsumeRandomLengthString(100);

  hipache::log::AccessLogEntry entry;
  entry.method = texts[0];
  entry.target = texts[1];
  entry.referer = texts[2];
  entry.user_agent = texts[3];
  entry.request_id = texts[4];
  entry.backend_url = texts[5];
  entry.identifier = texts[6];
  entry.remote = remote;
  entry.protocol = hipache::log::protocol_name(input.ConsumeIntegral<unsigned>());
  entry.status = input.ConsumeIntegral<unsigned>();
  entry.bytes_sent = input.ConsumeIntegral<std::uint64_t>();
  entry.attempts = input.ConsumeIntegral<unsigned>();
  entry.total = std::chrono::milliseconds(input.ConsumeIntegral<std::int32_t>());
  // Up to the year 2255: system_clock counts nanoseconds in 64 bits.
  entry.when = std::chrono::system_clock::time_point(
      std::chrono::seconds(input.ConsumeIntegralInRange<std::int64_t>(0, 9000000000)));
  check_formats(entry, texts);

  // The id a client sent, as the request path takes it.
  hipache::http::Request request;
  try {
    request.insert("X-Request-Id", texts[4]);
  } catch (const std::exception&) {
    return 0;  // Beast refuses the value (over its size limit): no such request arrives
  }
  // As a parser would store it: Beast trims the value's surrounding white space.
  const std::string sent(hipache::http::to_std(request["X-Request-Id"]));
  const bool well_formed = hipache::http::is_well_formed_request_id(sent);
  hipache::http::RequestIdGenerator ids({1, 2, 3, 4});
  std::string id;
  const bool kept = hipache::http::take_request_id(request, "X-Request-Id", ids, id);
  CHECK(kept == well_formed && (!kept || id == sent));
  CHECK(hipache::http::is_well_formed_request_id(id));
  CHECK(request.count("X-Request-Id") == 0);
  return 0;
}
