// A TLS session whose records our own code reads from and writes to the socket, once Asio did
// the handshake. asio::ssl::stream passes every record through a BIO pair and its engine (a copy
// each way, an extra SSL_read and error-queue clearing per operation); the HTTP/2 connection's
// loops, which move many small records, instead hand the ciphertext they read to OpenSSL through
// a minimal BIO of ours, and send what OpenSSL wrote into it. The ssl::stream keeps owning the
// SSL object and must do no I/O afterwards; the socket stays Asio's alone.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/buffer.hpp>

#include "net/stream.hpp"

namespace hipache::net {

enum class TlsReadState {
  data,       // `size` bytes of application data
  want_read,  // every record given was read: give the next ciphertext
  closed,     // the peer ended the session (close_notify)
  failed,     // a TLS error: the connection is over
};

struct TlsRead {
  TlsReadState state;
  std::size_t size = 0;
};

class TlsRecords {
 public:
  // Takes over `tls`'s session (handshake done). The application data Asio had already read is
  // appended to `received`. Null when the session cannot move (it failed, or bytes still wait
  // in Asio's buffers): keep using `tls` then; `received` is right either way.
  static std::unique_ptr<TlsRecords> take_over(TlsStream& tls, std::string& received);

  // For take_over() (the key is its alone).
  class Key {
    friend class TlsRecords;
    Key() = default;
  };
  TlsRecords(Key, SSL* ssl) : ssl_(ssl) {}
  ~TlsRecords();
  TlsRecords(const TlsRecords&) = delete;
  TlsRecords& operator=(const TlsRecords&) = delete;

  // Room for ciphertext: a TLS record's worth.
  static constexpr std::size_t kBufferSize = 16 * 1024;

  // Where the next ciphertext is read into (after what OpenSSL has not taken yet, if anything:
  // empty only if that fills the buffer), then given().
  boost::asio::mutable_buffer read_buffer();
  void given(std::size_t size);
  // Decrypts the next application data into `out`.
  TlsRead read(void* out, std::size_t size);
  // Encrypts `size` bytes into pending_output(); false on a TLS error.
  bool write(const void* data, std::size_t size);
  // Records to send (written by write(), or by read() answering the peer, e.g. a key update).
  std::string& pending_output() { return output_; }

 private:
  static int bio_read(BIO* bio, char* out, std::size_t size, std::size_t* read);
  static int bio_write(BIO* bio, const char* data, std::size_t size, std::size_t* written);
  static long bio_ctrl(BIO* bio, int command, long number, void* pointer);

  SSL* ssl_;  // owned by the TlsStream
  BIO* bio_ = nullptr;
  std::array<std::uint8_t, kBufferSize> ciphertext_{};
  std::size_t input_begin_ = 0;  // ciphertext_[input_begin_, input_end_) not yet taken by OpenSSL
  std::size_t input_end_ = 0;
  bool ended_ = false;  // read() said closed or failed: OpenSSL is asked again, and says so again
  std::string output_;
};

}  // namespace hipache::net
