#include "net/tls.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>

namespace hipache::net {

namespace {

// Hipache's default cipher string. It names ciphers modern OpenSSL no longer offers (RC4 among
// them), so it is swapped for OpenSSL's modern default rather than taken literally.
constexpr const char* kHipacheDefaultCiphers =
    "DH+ECDSA+AESGCM EECDH+aRSA+AESGCM EECDH+ECDSA+SHA384 EECDH+ ECDSA+SHA256 EECDH+a "
    "RSA+SHA384 EECDH+aRSA+SHA256 EECDH+aRSA+RC4 EECDH EDH+aRSA RC4 !aNULL !eNULL !LOW !3DES "
    "!MD5 !EXP !PSK !SRP !DSS !RC4";
constexpr const char* kModernCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

std::string openssl_error() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char text[256];
  ERR_error_string_n(code, text, sizeof text);
  return text;
}

[[noreturn]] void fail(const Config& config, const std::string& key, const std::string& what) {
  throw ConfigError(config.source_path + ": " + key + ": " + what);
}

// Protocol range from Node/OpenSSL method names; TLS 1.2 is the floor unless a method names an
// older version explicitly.
void apply_protocol(SSL_CTX* ctx, const std::string& method) {
  int min = TLS1_2_VERSION;
  int max = 0;  // highest supported
  const auto is = [&](const char* name) { return method.rfind(name, 0) == 0; };
  if (is("TLSv1_3")) {
    min = max = TLS1_3_VERSION;
  } else if (is("TLSv1_2")) {
    min = max = TLS1_2_VERSION;
  } else if (is("TLSv1_1")) {
    min = max = TLS1_1_VERSION;
  } else if (is("TLSv1_")) {
    min = max = TLS1_VERSION;
  }
  SSL_CTX_set_min_proto_version(ctx, min);
  SSL_CTX_set_max_proto_version(ctx, max);
  if (min < TLS1_2_VERSION) {
    // OpenSSL 3 refuses TLS 1.0/1.1 at its default security level; the operator asked for it.
    SSL_CTX_set_security_level(ctx, 0);
  }
}

// ALPN: h2 when the client offers it and HTTP/2 is on, else http/1.1. `arg` is the server's list
// in preference order (wire format).
int select_protocol(SSL*, const unsigned char** out, unsigned char* out_length,
                    const unsigned char* in, unsigned int in_length, void* arg) {
  const auto* ours = static_cast<const std::string_view*>(arg);
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(
          &selected, out_length, reinterpret_cast<const unsigned char*>(ours->data()),
          static_cast<unsigned>(ours->size()), in, in_length) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;  // none of ours offered: carry on without ALPN
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

constinit const std::string_view kHttp11Only("\x08http/1.1", 9);
constinit const std::string_view kH2ThenHttp11("\x02h2\x08http/1.1", 12);

int choose_certificate(SSL* ssl, int*, void* arg) {
  const auto* table = static_cast<const SniTable*>(arg);
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (table == nullptr || name == nullptr) return SSL_TLSEXT_ERR_OK;  // default certificate
  if (auto* ctx = table->find(name)) SSL_set_SSL_CTX(ssl, ctx->native_handle());
  return SSL_TLSEXT_ERR_OK;
}

std::vector<X509Ptr> read_certificates(const std::string& path) {
  std::vector<X509Ptr> certs;
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) return certs;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(cert);
  }
  ERR_clear_error();  // the loop ends on "no start line"
  return certs;
}

std::shared_ptr<ssl::context> make_context(const Config& config, const TlsSettings& tls,
                                           const std::string& origin,
                                           const std::array<unsigned char, 80>& ticket_keys,
                                           std::vector<std::string>& warnings) {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* ctx = context->native_handle();
  apply_protocol(ctx, tls.secure_protocol);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                               static_cast<uint64_t>(tls.secure_options));
  if (tls.honor_cipher_order) SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
  std::string ciphers = tls.ciphers;
  if (ciphers == kHipacheDefaultCiphers) {
    warnings.push_back(config.source_path + ": " + origin +
                       ".ciphers: Hipache's default cipher list names ciphers OpenSSL no longer "
                       "offers; using a modern default instead");
    ciphers = kModernCiphers;
  }
  if (!ciphers.empty() && SSL_CTX_set_cipher_list(ctx, ciphers.c_str()) != 1) {
    fail(config, origin + ".ciphers", "OpenSSL accepts no cipher of \"" + ciphers + "\"");
  }
  // Always installed: without it OpenSSL would prompt on the terminal for an encrypted key.
  context->set_password_callback(
      [passphrase = tls.passphrase](std::size_t, ssl::context::password_purpose) {
        return passphrase;
      });
  boost::system::error_code ec;
  const auto detail = [&ec] {
    std::string text = openssl_error();
    return text == "unknown OpenSSL error" ? ec.message() : text;
  };
  context->use_certificate_chain_file(tls.cert, ec);
  if (ec) fail(config, origin + ".cert", "cannot load " + tls.cert + ": " + detail());
  context->use_private_key_file(tls.key, ssl::context::pem, ec);
  if (ec) {
    const std::string why = detail();
    if (why.find("mismatch") != std::string::npos) {
      fail(config, origin + ".key", tls.key + " does not match the certificate " + tls.cert);
    }
    const bool encrypted = why.find("bad decrypt") != std::string::npos ||
                           why.find("bad password") != std::string::npos ||
                           why.find("PEM lib") != std::string::npos;
    fail(config, origin + ".key",
         "cannot load " + tls.key +
             (encrypted ? (tls.passphrase.empty() ? " (encrypted key: set https.passphrase)"
                                                  : " (wrong passphrase?)")
                        : "") +
             ": " + why);
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    fail(config, origin + ".key", tls.key + " does not match the certificate " + tls.cert);
  }
  // Hipache users list intermediates under "ca" (Node completed the chain from it).
  for (const auto& ca : tls.ca) {
    auto certs = read_certificates(ca);
    if (certs.empty()) fail(config, origin + ".ca", "no PEM certificate in " + ca);
    for (auto& cert : certs) {
      X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), cert.get());
      SSL_CTX_add1_chain_cert(ctx, cert.get());
    }
  }
  SSL_CTX_set_alpn_select_cb(
      ctx, &select_protocol,
      const_cast<std::string_view*>(config.server.http2 ? &kH2ThenHttp11 : &kHttp11Only));
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  SSL_CTX_set_tlsext_ticket_keys(ctx, const_cast<unsigned char*>(ticket_keys.data()),
                                 static_cast<long>(ticket_keys.size()));
  ERR_clear_error();
  return context;
}

std::string lowercase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) {
    return static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  });
  return s;
}

void load_cert_dir(const Config& config, const TlsSettings& defaults,
                   const std::array<unsigned char, 80>& ticket_keys, SniTable& table,
                   std::vector<std::string>& warnings) {
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  for (std::filesystem::directory_iterator it(config.cert_dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    std::error_code type_ec;
    if (it->is_regular_file(type_ec) && it->path().extension() == ".pem") {
      files.push_back(it->path());
    }
  }
  if (ec) fail(config, "https.certDir", "cannot read " + config.cert_dir + ": " + ec.message());
  std::sort(files.begin(), files.end());  // deterministic: the first file wins a name
  for (const auto& file : files) {
    // Each file holds the certificate chain and its private key.
    TlsSettings tls = defaults;
    tls.cert = file.string();
    tls.key = file.string();
    tls.ca.clear();
    auto context = make_context(config, tls, "https.certDir", ticket_keys, warnings);
    for (const auto& name : certificate_names(file.string())) {
      if (name.rfind("*.", 0) == 0) {
        table.wildcard.emplace(name.substr(2), context);
      } else {
        table.exact.emplace(name, context);
      }
    }
  }
}

}  // namespace

ssl::context* SniTable::find(const std::string& server_name) const {
  const std::string name = lowercase(server_name);
  if (const auto it = exact.find(name); it != exact.end()) return it->second.get();
  const auto dot = name.find('.');
  if (dot == std::string::npos) return nullptr;
  if (const auto it = wildcard.find(name.substr(dot + 1)); it != wildcard.end()) {
    return it->second.get();
  }
  return nullptr;
}

std::vector<std::string> certificate_names(const std::string& pem_path) {
  std::vector<std::string> names;
  auto certs = read_certificates(pem_path);
  if (certs.empty()) return names;
  X509* cert = certs.front().get();
  auto* alt_names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (alt_names != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(alt_names); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(alt_names, i);
      if (name->type != GEN_DNS) continue;
      const auto* data = ASN1_STRING_get0_data(name->d.dNSName);
      names.push_back(lowercase(
          std::string(reinterpret_cast<const char*>(data), ASN1_STRING_length(name->d.dNSName))));
    }
    GENERAL_NAMES_free(alt_names);
  }
  if (names.empty()) {
    char common_name[256] = {0};
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, common_name,
                                  sizeof common_name) > 0) {
      names.push_back(lowercase(common_name));
    }
  }
  return names;
}

std::shared_ptr<ServerTls> make_server_tls(const Config& config, const ServerTls* previous,
                                           std::vector<std::string>& warnings) {
  auto tls = std::make_shared<ServerTls>();
  if (previous != nullptr) {
    tls->ticket_keys = previous->ticket_keys;
  } else if (RAND_bytes(tls->ticket_keys.data(), static_cast<int>(tls->ticket_keys.size())) != 1) {
    throw ConfigError("cannot generate TLS session-ticket keys: " + openssl_error());
  }
  tls->sni = std::make_shared<SniTable>();
  if (!config.cert_dir.empty()) {
    load_cert_dir(config, config.https, tls->ticket_keys, *tls->sni, warnings);
  }
  // Listeners with the same settings share one context.
  std::map<std::string, std::shared_ptr<ssl::context>> by_files;
  for (std::size_t i = 0; i < config.listeners.size(); ++i) {
    const auto& listener = config.listeners[i];
    if (!listener.tls) {
      tls->per_listener.push_back(nullptr);
      continue;
    }
    const auto& settings = listener.tls_settings;
    // Everything make_context reads is part of the identity.
    std::string identity = settings.cert + '\n' + settings.key + '\n' + settings.passphrase + '\n' +
                           settings.ciphers + '\n' + settings.secure_protocol + '\n' +
                           std::to_string(settings.secure_options) +
                           (settings.honor_cipher_order ? "\nhonor" : "\n");
    for (const auto& ca : settings.ca) identity += '\n' + ca;
    auto& context = by_files[identity];
    if (!context) context = make_context(config, settings, "https", tls->ticket_keys, warnings);
    SSL_CTX_set_tlsext_servername_callback(context->native_handle(), &choose_certificate);
    SSL_CTX_set_tlsext_servername_arg(context->native_handle(), tls->sni.get());
    tls->per_listener.push_back(context);
  }
  return tls;
}

std::shared_ptr<ssl::context> make_backend_tls(bool verify) {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_2_VERSION);
  if (verify) {
    boost::system::error_code ec;
    context->set_default_verify_paths(ec);
    context->set_verify_mode(ssl::verify_peer);
  } else {
    context->set_verify_mode(ssl::verify_none);
  }
  return context;
}

bool alpn_selected(const SSL* tls, std::string_view protocol) {
  const unsigned char* selected = nullptr;
  unsigned length = 0;
  SSL_get0_alpn_selected(tls, &selected, &length);
  return std::string_view(reinterpret_cast<const char*>(selected), length) == protocol;
}

}  // namespace hipache::net
