// The two ends' TLS contexts for fuzz_tls_records, made once per process: a server context set
// up as net/tls.cpp sets up a listener, with a throwaway P-256 key and self-signed certificate
// generated in memory, and a client context that verifies nothing.
#pragma once

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <array>
#include <boost/asio/ssl/context.hpp>
#include <memory>

namespace hipache::fuzz {

inline void check(bool condition) {
  if (!condition) __builtin_trap();
}

template <class T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using SslPtr = std::unique_ptr<SSL, Deleter<SSL, SSL_free>>;
using CtxPtr = std::unique_ptr<SSL_CTX, Deleter<SSL_CTX, SSL_CTX_free>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using CertPtr = std::unique_ptr<X509, Deleter<X509, X509_free>>;

// The throwaway P-256 key and self-signed certificate, and the two contexts, made once.
struct Contexts {
  boost::asio::ssl::context server{boost::asio::ssl::context::tls_server};
  CtxPtr client{SSL_CTX_new(TLS_client_method())};

  Contexts() {
    KeyPtr key(EVP_EC_gen("P-256"));
    CertPtr cert(X509_new());
    check(key && cert && client);
    X509_set_version(cert.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600L * 24 * 365);
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("fuzz.test"), -1, -1, 0);
    X509_set_issuer_name(cert.get(), name);
    X509_set_pubkey(cert.get(), key.get());
    check(X509_sign(cert.get(), key.get(), EVP_sha256()) > 0);
    SSL_CTX* ctx = server.native_handle();
    // As net/tls.cpp sets up a listener; the default cipher list keeps CBC suites reachable.
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    check(SSL_CTX_use_certificate(ctx, cert.get()) == 1);
    check(SSL_CTX_use_PrivateKey(ctx, key.get()) == 1);
    SSL_CTX_set_verify(client.get(), SSL_VERIFY_NONE, nullptr);
  }
};

constexpr std::array<const char*, 3> kTls13Suites = {
    "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"};
constexpr std::array<const char*, 4> kTls12Ciphers = {
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES256-SHA384",
    "ECDHE-ECDSA-AES128-SHA"};

}  // namespace hipache::fuzz
