// server.accessLogFormat and server.requestIdHeader: defaults, values, errors and --dry output.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "config_test_support.hpp"
#include "hipache/config.hpp"

namespace hipache {
namespace {

using config_test::parse;
using config_test::parse_error;
using nlohmann::json;

TEST(ConfigAccessLogFormat, DefaultsToHipache) {
  EXPECT_EQ(parse("{}").server.access_log_format, AccessLogFormat::hipache);
  EXPECT_EQ(parse(R"({"server": {"accessLogFormat": null}})").server.access_log_format,
            AccessLogFormat::hipache);
}

TEST(ConfigAccessLogFormat, Values) {
  EXPECT_EQ(parse(R"({"server": {"accessLogFormat": "json"}})").server.access_log_format,
            AccessLogFormat::json);
  EXPECT_EQ(parse(R"({"server": {"accessLogFormat": "hipache"}})").server.access_log_format,
            AccessLogFormat::hipache);
}

TEST(ConfigAccessLogFormat, UnknownValueIsAnError) {
  EXPECT_EQ(parse_error(R"({"server": {"accessLogFormat": "xml"}})"),
            "config/x.json: server.accessLogFormat: unknown access log format \"xml\" "
            "(expected \"hipache\" or \"json\")");
  EXPECT_EQ(parse_error(R"({"server": {"accessLogFormat": "JSON"}})"),
            "config/x.json: server.accessLogFormat: unknown access log format \"JSON\" "
            "(expected \"hipache\" or \"json\")");
  EXPECT_EQ(parse_error(R"({"server": {"accessLogFormat": 1}})"),
            "config/x.json: server.accessLogFormat: expected a string, got 1");
}

TEST(ConfigRequestIdHeader, OffByDefault) {
  EXPECT_FALSE(parse("{}").server.request_id_header.has_value());
  EXPECT_FALSE(parse(R"({"server": {"requestIdHeader": null}})").server.request_id_header);
  EXPECT_FALSE(parse(R"({"server": {"requestIdHeader": ""}})").server.request_id_header);
}

TEST(ConfigRequestIdHeader, AFieldName) {
  EXPECT_EQ(parse(R"({"server": {"requestIdHeader": "X-Request-Id"}})").server.request_id_header,
            "X-Request-Id");
}

TEST(ConfigRequestIdHeader, BadNamesAreErrors) {
  EXPECT_EQ(parse_error(R"({"server": {"requestIdHeader": "X Request"}})"),
            "config/x.json: server.requestIdHeader: \"X Request\" is not a header field name "
            "(letters, digits, -_.!#$%&'*+^`|~)");
  EXPECT_EQ(parse_error(R"({"server": {"requestIdHeader": "Host"}})"),
            "config/x.json: server.requestIdHeader: \"Host\" names a field the proxy itself "
            "reads, adds or rewrites");
  EXPECT_EQ(parse_error(R"({"server": {"requestIdHeader": true}})"),
            "config/x.json: server.requestIdHeader: expected a string, got true");
}

TEST(ConfigObservability, DryOutputShowsBoth) {
  const json defaults = json::parse(describe_config(parse("{}")));
  EXPECT_EQ(defaults["server"]["accessLogFormat"], "hipache");
  EXPECT_TRUE(defaults["server"]["requestIdHeader"].is_null());
  const json set = json::parse(describe_config(
      parse(R"({"server": {"accessLogFormat": "json", "requestIdHeader": "X-Request-Id"}})")));
  EXPECT_EQ(set["server"]["accessLogFormat"], "json");
  EXPECT_EQ(set["server"]["requestIdHeader"], "X-Request-Id");
}

}  // namespace
}  // namespace hipache
