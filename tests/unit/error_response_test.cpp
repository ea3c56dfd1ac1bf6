#include <gtest/gtest.h>

#include "http/error_response.hpp"

#include <string>
#include <utility>
#include <vector>

namespace hipache::http {
namespace {

TEST(ErrorResponse, TheHeadersOfEveryErrorPage) {
  ErrorResponse error;
  error.status = 502;
  error.body = "<p>bad</p>";
  EXPECT_EQ(serialize_error_response(error),
            "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nCache-Control: no-cache\r\n"
            "Pragma: no-cache\r\nExpires: -1\r\nConnection: close\r\nContent-Length: 10\r\n\r\n"
            "<p>bad</p>");
}

TEST(ErrorResponse, GrpcClientsGetAStatusNotAPage) {
  for (const auto& [status, code] : std::vector<std::pair<unsigned, std::string>>{
           {502, "14"}, {503, "14"}, {504, "14"}, {400, "13"}, {404, "12"}, {431, "2"}}) {
    ErrorResponse error;
    error.status = status;
    error.body = "<p>page</p>";
    error.make_grpc("Backend refused the connection");
    EXPECT_EQ(serialize_error_response(error),
              "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\ngrpc-status: " + code +
                  "\r\ngrpc-message: Backend refused the connection\r\nConnection: close\r\n"
                  "Content-Length: 0\r\n\r\n");
  }
}

TEST(ErrorResponse, GrpcContentTypes) {
  EXPECT_TRUE(is_grpc_content_type("application/grpc"));
  EXPECT_TRUE(is_grpc_content_type("Application/GRPC+proto"));
  EXPECT_TRUE(is_grpc_content_type("application/grpc;charset=utf-8"));
  EXPECT_FALSE(is_grpc_content_type("application/grpc-web"));
  EXPECT_FALSE(is_grpc_content_type("application/json"));
  EXPECT_FALSE(is_grpc_content_type(""));
}

TEST(ErrorResponse, KeepAliveDebugAndRetryAfter) {
  ErrorResponse error;
  error.status = 503;
  error.body = "x";
  error.keep_alive = true;
  error.http10_client = true;
  error.debug_reason = "Too many connections";
  error.retry_after = true;
  const auto bytes = serialize_error_response(error);
  EXPECT_NE(bytes.find("\r\nx-debug-error: Too many connections\r\n"), std::string::npos);
  EXPECT_NE(bytes.find("\r\nx-debug-version-hipache: "), std::string::npos);
  EXPECT_NE(bytes.find("\r\nRetry-After: 1\r\n"), std::string::npos);
  EXPECT_NE(bytes.find("\r\nConnection: keep-alive\r\n"), std::string::npos);
  error.http10_client = false;  // HTTP/1.1 keeps alive unless told otherwise
  EXPECT_EQ(serialize_error_response(error).find("Connection:"), std::string::npos);
}

TEST(ErrorResponse, CarriesTheRequestId) {
  ErrorResponse error;
  error.status = 400;
  error.body = "x";
  EXPECT_EQ(serialize_error_response(error).find("X-Request-Id"), std::string::npos);
  error.request_id_field = "X-Request-Id";
  error.request_id = "0123abcd";
  const auto bytes = serialize_error_response(error);
  EXPECT_NE(bytes.find("\r\nX-Request-Id: 0123abcd\r\n"), std::string::npos) << bytes;
  EXPECT_LT(bytes.find("X-Request-Id"), bytes.find("\r\n\r\n"));
}

}  // namespace
}  // namespace hipache::http
