// TLS records through our own buffers: moving a session off Asio's BIO pair, the BIO, and the
// reads and writes.
#include "net/tls_records.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>

#include <algorithm>
#include <cassert>
#include <climits>
#include <cstring>

namespace hipache::net {

namespace {

// SSL_get_error needs an empty error queue before the call it reports on. Clearing only when
// something is queued keeps the common case to one lookup.
void clear_errors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

int clamp(std::size_t size) {
  return size > static_cast<std::size_t>(INT_MAX) ? INT_MAX : static_cast<int>(size);
}

struct MethodDeleter {
  void operator()(BIO_METHOD* method) const { BIO_meth_free(method); }
};

}  // namespace

std::unique_ptr<TlsRecords> TlsRecords::take_over(TlsStream& tls, std::string& received) {
  static const std::unique_ptr<BIO_METHOD, MethodDeleter> method = [] {
    std::unique_ptr<BIO_METHOD, MethodDeleter> made(
        BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "hipache records"));
    if (made) {
      BIO_meth_set_read_ex(made.get(), &TlsRecords::bio_read);
      BIO_meth_set_write_ex(made.get(), &TlsRecords::bio_write);
      BIO_meth_set_ctrl(made.get(), &TlsRecords::bio_ctrl);
    }
    return made;
  }();
  if (!method) return nullptr;
  SSL* ssl = tls.native_handle();
  // Records Asio read along with the handshake's last flight wait in the pair: decrypt them now.
  std::array<char, 16 * 1024> plain{};
  for (;;) {
    clear_errors();
    const int result = SSL_read(ssl, plain.data(), clamp(plain.size()));
    if (result > 0) {
      received.append(plain.data(), static_cast<std::size_t>(result));
      continue;
    }
    if (SSL_get_error(ssl, result) != SSL_ERROR_WANT_READ) {
      ERR_clear_error();
      return nullptr;
    }
    break;
  }
  // Wanting to read, OpenSSL took every byte of the pair (a partial record moves along in its
  // own buffer), and Asio sent the handshake's last output before it reported it done. Checked
  // rather than relied on.
  if (BIO_ctrl_pending(SSL_get_rbio(ssl)) != 0 || BIO_ctrl_wpending(SSL_get_wbio(ssl)) != 0) {
    return nullptr;
  }
  BIO* bio = BIO_new(method.get());
  if (bio == nullptr) return nullptr;
  auto records = std::make_unique<TlsRecords>(Key{}, ssl);
  records->bio_ = bio;
  BIO_set_data(bio, records.get());
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl, bio, bio);  // frees OpenSSL's half of the pair; the stream frees the other
  SSL_set_read_ahead(ssl, 1);  // all the records given, in as few BIO reads as they fit
  return records;
}

TlsRecords::~TlsRecords() {
  BIO_set_data(bio_, nullptr);  // the SSL object (and the BIO) outlive this
}

boost::asio::mutable_buffer TlsRecords::read_buffer() {
  // OpenSSL takes all it is given before it wants more; should a rest remain, it goes first.
  if (input_begin_ > 0) {
    std::memmove(ciphertext_.data(), ciphertext_.data() + input_begin_, input_end_ - input_begin_);
    input_end_ -= input_begin_;
    input_begin_ = 0;
  }
  return boost::asio::buffer(ciphertext_.data() + input_end_, ciphertext_.size() - input_end_);
}

void TlsRecords::given(std::size_t size) {
  assert(input_end_ + size <= ciphertext_.size());
  input_end_ += size;
}

TlsRead TlsRecords::read(void* out, std::size_t size) {
  // Every byte given was taken and OpenSSL holds no record (read ahead or partly read): an
  // SSL_read would only find that out, at the cost of a record-layer pass and the error queue.
  if (!ended_ && input_begin_ == input_end_ && SSL_has_pending(ssl_) == 0) {
    return {TlsReadState::want_read};
  }
  clear_errors();
  const int result = SSL_read(ssl_, out, clamp(size));
  if (result > 0) return {TlsReadState::data, static_cast<std::size_t>(result)};
  switch (SSL_get_error(ssl_, result)) {
    case SSL_ERROR_WANT_READ:
      return {TlsReadState::want_read};
    case SSL_ERROR_ZERO_RETURN:
      ended_ = true;
      return {TlsReadState::closed};
    default:
      ERR_clear_error();
      ended_ = true;
      return {TlsReadState::failed};
  }
}

bool TlsRecords::write(const void* data, std::size_t size) {
  const auto* bytes = static_cast<const char*>(data);
  while (size > 0) {
    clear_errors();
    const int result = SSL_write(ssl_, bytes, clamp(size));
    if (result <= 0) {
      ERR_clear_error();
      return false;  // the BIO takes everything: only a TLS error gets here
    }
    bytes += result;
    size -= static_cast<std::size_t>(result);
  }
  return true;
}

int TlsRecords::bio_read(BIO* bio, char* out, std::size_t size, std::size_t* read) {
  BIO_clear_retry_flags(bio);
  auto* self = static_cast<TlsRecords*>(BIO_get_data(bio));
  if (self == nullptr) return 0;
  const std::size_t available = self->input_end_ - self->input_begin_;
  if (available == 0) {
    BIO_set_retry_read(bio);
    *read = 0;
    return 0;
  }
  const std::size_t n = std::min(size, available);
  std::memcpy(out, self->ciphertext_.data() + self->input_begin_, n);
  self->input_begin_ += n;
  *read = n;
  return 1;
}

int TlsRecords::bio_write(BIO* bio, const char* data, std::size_t size, std::size_t* written) {
  BIO_clear_retry_flags(bio);
  auto* self = static_cast<TlsRecords*>(BIO_get_data(bio));
  if (self == nullptr) return 0;
  self->output_.append(data, size);
  *written = size;
  return 1;
}

long TlsRecords::bio_ctrl(BIO* bio, int command, long, void*) {
  auto* self = static_cast<TlsRecords*>(BIO_get_data(bio));
  switch (command) {
    case BIO_CTRL_FLUSH:
      return 1;  // the output waits in output_ for the connection's writer
    case BIO_CTRL_PENDING:
      return self == nullptr ? 0 : static_cast<long>(self->input_end_ - self->input_begin_);
    case BIO_CTRL_WPENDING:
      return self == nullptr ? 0 : static_cast<long>(self->output_.size());
    default:
      return 0;
  }
}

}  // namespace hipache::net
