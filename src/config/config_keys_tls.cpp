// The TLS keys (https, server.https and https bind objects) and the reader of secureProtocol.
#include <algorithm>
#include <array>

#include "config/key_access.hpp"

namespace hipache::config {
namespace {

// Node/OpenSSL method names Hipache passed to tls.createServer; the TLS code maps them.
constexpr std::array<std::string_view, 12> kSecureProtocols = {
    "SSLv23_method",  "SSLv23_server_method",  "TLS_method",     "TLS_server_method",
    "TLSv1_2_method", "TLSv1_2_server_method", "TLSv1_3_method", "TLSv1_3_server_method",
    "TLSv1_method",   "TLSv1_server_method",   "TLSv1_1_method", "TLSv1_1_server_method"};

struct ReadSecureProtocol {
  void operator()(const Reader& reader, const json& value, const std::string& key, const Bounds&,
                  std::string& out) const {
    std::string name = reader.string(value, key);
    if (!name.empty() && std::find(kSecureProtocols.begin(), kSecureProtocols.end(), name) ==
                             kSecureProtocols.end()) {
      reader.fail(key, "unsupported value " + describe(value) +
                           " (expected SSLv23_method, TLS_method, TLSv1_2_method, "
                           "TLSv1_3_method, TLSv1_1_method, TLSv1_method or their _server_method "
                           "forms)");
    }
    out = std::move(name);
  }
};

using T = TlsSettings;
constexpr std::string_view kHttps = "https";
constexpr Key<T> kTlsKeys[] = {
    Key<T>{kHttps, "key", member<&T::key>, "PEM private key file."}.per_listener().documented_as(
        "—"),
    Key<T>{kHttps, "cert", member<&T::cert>, "PEM certificate (chain) file."}
        .per_listener()
        .documented_as("—"),
    Key<T>{kHttps, "ca", member<&T::ca>, "Extra CA certificate files."}.per_listener(),
    Key<T>{kHttps, "passphrase", member<&T::passphrase>, "Passphrase of an encrypted key."}
        .per_listener()
        .censored(),
    // Not checked here: only OpenSSL knows which cipher strings it accepts (the TLS code asks).
    Key<T>{kHttps, "ciphers", member<&T::ciphers>, "OpenSSL cipher list."}.per_listener(),
    {kHttps, "honorCipherOrder", member<&T::honor_cipher_order>, "The server's cipher order."},
    Key<T>{kHttps, "secureProtocol", member<&T::secure_protocol, ReadSecureProtocol>,
           "Node/OpenSSL method name."}
        .per_listener(),
    Key<T>{kHttps, "secureOptions", member<&T::secure_options>, "OpenSSL SSL_OP_* bits."}.within(
        at_most(kUnbounded)),
};

}  // namespace

std::span<const Key<TlsSettings>> tls_keys() {
  return kTlsKeys;
}

}  // namespace hipache::config
