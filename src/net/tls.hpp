// TLS contexts: the server side of the https listeners (key/cert/ca/passphrase, protocol and
// cipher options, ALPN h2 and http/1.1, SNI certificates from https.certDir) and the client side
// used for https:// backends.
//
// Server contexts are built by the master before it forks, so every worker shares the same
// session-ticket keys and a client resumes its session whichever worker it reaches.
#pragma once

#include <array>
#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "hipache/config.hpp"

namespace hipache::net {

namespace ssl = boost::asio::ssl;

// Certificates picked by server name (SNI): exact names and "*.domain" wildcards.
struct SniTable {
  std::unordered_map<std::string, std::shared_ptr<ssl::context>> exact;
  std::unordered_map<std::string, std::shared_ptr<ssl::context>> wildcard;  // key: "domain"
  ssl::context* find(const std::string& server_name) const;
};

struct ServerTls {
  // One context per entry of Config::listeners (null for plain http listeners).
  std::vector<std::shared_ptr<ssl::context>> per_listener;
  std::shared_ptr<SniTable> sni;
  std::array<unsigned char, 80> ticket_keys{};
};

// Builds every server context of `config`. Throws ConfigError naming the file and key when a
// certificate, key, passphrase, CA or cipher string is refused. `previous` (on reload) passes its
// session-ticket keys on, so sessions survive a reload. Warnings are appended to `warnings`.
std::shared_ptr<ServerTls> make_server_tls(const Config& config, const ServerTls* previous,
                                           std::vector<std::string>& warnings);

// The client context for https:// backends: system trust store, TLS 1.2 minimum, and peer
// verification unless `verify` is false.
std::shared_ptr<ssl::context> make_backend_tls(bool verify);

// Whether the finished handshake on `tls` agreed on the ALPN protocol `protocol`.
bool alpn_selected(const SSL* tls, std::string_view protocol);

// Names a certificate answers for (subjectAltName DNS entries, else the common name); for tests.
std::vector<std::string> certificate_names(const std::string& pem_path);

}  // namespace hipache::net
