// Fuzz target: net::TlsRecords, the TLS session an HTTP/2 connection reads and writes through its
// own buffers once Asio did the handshake. Per input, a real handshake (TLS 1.3 or 1.2, a cipher
// picked by the input) runs between an OpenSSL client on memory BIOs and the server's
// TlsStream over one end of a socket pair, optionally with application data sent along with the
// client's Finished and some of it read through Asio first (as the HTTP/1 connection does before
// it hands over); then TlsRecords takes the session over and the input drives it: client writes,
// how the ciphertext is cut into read_buffer()/given() pieces, bytes flipped, inserted or dropped,
// raw records, close_notify, KeyUpdate (TLS 1.2: a renegotiation attempt), server writes.
// Invariants: read_buffer() spans exactly the buffer's free part (what OpenSSL has not taken sits
// before it, the end never moves) and is never empty after want_read; what is read is a prefix of
// what the client sent, all of it when nothing was corrupted, and nothing from the first corrupted
// record on; nothing is read after failed or closed; once a corrupted record is complete the
// session fails (closed only if the close_notify came first); what the server writes decrypts on
// the client to exactly those bytes. Leaks: LeakSanitizer.
#include <fuzzer/FuzzedDataProvider.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/io_context.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "net/stream.hpp"
#include "net/tls_records.hpp"
#include "tls_fuzz_contexts.hpp"

namespace {

namespace asio = boost::asio;
using hipache::net::TlsRead;
using hipache::net::TlsReadState;
using hipache::net::TlsRecords;
using hipache::net::TlsStream;

using hipache::fuzz::check;
using hipache::fuzz::Contexts;
using hipache::fuzz::kTls12Ciphers;
using hipache::fuzz::kTls13Suites;
using hipache::fuzz::SslPtr;

// Byte `offset` of a direction's plaintext: position-dependent, so a reordering shows.
char pattern(std::size_t offset, unsigned salt) {
  return static_cast<char>((offset * 131 + (offset >> 8) * 7 + salt) & 0xff);
}

// Client ciphertext sent after the take-over, and which plaintext each piece carries.
struct Segment {
  std::size_t wire_begin, wire_end, plain_begin, plain_end;
};

class Session {
 public:
  Session(Contexts& contexts, asio::io_context& io, FuzzedDataProvider& input)
      : io_(io), input_(input) {
    int fds[2];
    check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
    client_fd_ = fds[1];
    // Asio only reads and writes the socket; a local stream socket does for TCP here.
    asio::ip::tcp::socket socket(io);
    socket.assign(asio::ip::tcp::v4(), fds[0]);
    server_fd_ = fds[0];
    tls_ = std::make_unique<TlsStream>(hipache::net::DeadlineStream(std::move(socket)),
                                       contexts.server);
    client_.reset(SSL_new(contexts.client.get()));
    check(client_ != nullptr);
    client_in_ = BIO_new(BIO_s_mem());
    client_out_ = BIO_new(BIO_s_mem());
    check(client_in_ != nullptr && client_out_ != nullptr);
    BIO_set_mem_eof_return(client_in_, -1);
    BIO_set_mem_eof_return(client_out_, -1);
    SSL_set_bio(client_.get(), client_in_, client_out_);
    SSL_set_connect_state(client_.get());
  }

  ~Session() {
    records_.reset();
    tls_.reset();
    io_.restart();
    io_.poll();  // aborted operations' handlers, if any
    close(client_fd_);
    ERR_clear_error();
  }

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // The handshake, the take-over, then the input's operations and the final checks.
  void run() {
    tls13_ = input_.ConsumeBool();
    if (tls13_) {
      SSL_set_ciphersuites(
          client_.get(),
          kTls13Suites[input_.ConsumeIntegralInRange<std::size_t>(0, kTls13Suites.size() - 1)]);
    } else {
      SSL_set_max_proto_version(client_.get(), TLS1_2_VERSION);
      check(SSL_set_cipher_list(client_.get(),
                                kTls12Ciphers[input_.ConsumeIntegralInRange<std::size_t>(
                                    0, kTls12Ciphers.size() - 1)]) == 1);
    }
    const std::size_t early = tls13_ ? input_.ConsumeIntegralInRange<std::size_t>(0, 40000) : 0;
    const std::size_t asio_read = input_.ConsumeIntegralInRange<std::size_t>(0, 64);
    out_.resize(input_.ConsumeIntegralInRange<std::size_t>(1, 17000));
    handshake(early);
    if (early > 0 && asio_read > 0) read_through_asio(asio_read);
    records_ = TlsRecords::take_over(*tls_, received_);
    check(records_ != nullptr);
    check(sent_.compare(0, received_.size(), received_) == 0);
    take_socket_rest();
    while (input_.remaining_bytes() > 0) step();
    finish();
  }

 private:
  void handshake(std::size_t early) {
    bool server_done = false;
    boost::system::error_code server_error;
    tls_->async_handshake(asio::ssl::stream_base::server, [&](boost::system::error_code ec) {
      server_done = true;
      server_error = ec;
    });
    bool client_done = false;
    for (int round = 0; round < 50 && !(server_done && client_done); ++round) {
      if (!client_done) {
        const int result = SSL_do_handshake(client_.get());
        if (result == 1) {
          client_done = true;
          if (early > 0) client_write(early, false);  // along with the Finished
        } else {
          check(SSL_get_error(client_.get(), result) == SSL_ERROR_WANT_READ);
        }
      }
      send_client_output();
      io_.restart();
      io_.poll();
      receive_server_output();
    }
    check(server_done && client_done && !server_error);
  }

  // Some of the early data read by Asio, as when the HTTP/1 connection looks for the preface.
  void read_through_asio(std::size_t size) {
    std::string buffer(size, '\0');
    bool done = false;
    tls_->async_read_some(asio::buffer(buffer), [&](boost::system::error_code ec, std::size_t n) {
      check(!ec);
      received_.append(buffer.data(), n);
      done = true;
    });
    io_.restart();
    io_.poll();
    check(done);
  }

  // Bytes Asio left in the socket come before everything else on the wire.
  // They are the end of the early data: its records' segments move to the wire's coordinates.
  void take_socket_rest() {
    std::array<char, 4096> chunk{};
    for (;;) {
      const ssize_t n = ::recv(server_fd_, chunk.data(), chunk.size(), MSG_DONTWAIT);
      if (n <= 0) break;
      wire_.append(chunk.data(), static_cast<std::size_t>(n));
    }
    clean_ = wire_;
    if (wire_.empty()) return;
    check(!early_records_.empty());
    const std::size_t early_end = early_records_.back().wire_end;
    check(wire_.size() <= early_end - early_records_.front().wire_begin);
    const std::size_t rest_begin = early_end - wire_.size();
    for (const Segment& r : early_records_) {
      if (r.wire_end <= rest_begin) continue;
      segments_.push_back({std::max(r.wire_begin, rest_begin) - rest_begin, r.wire_end - rest_begin,
                           r.plain_begin, r.plain_end});
    }
  }

  void send_client_output() {
    std::string bytes = take_client_output();
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(client_fd_, bytes.data() + done, bytes.size() - done, 0);
      check(n > 0);
      done += static_cast<std::size_t>(n);
    }
  }

  void receive_server_output() {
    std::array<char, 4096> chunk{};
    for (;;) {
      const ssize_t n = ::recv(client_fd_, chunk.data(), chunk.size(), MSG_DONTWAIT);
      if (n <= 0) break;
      check(BIO_write(client_in_, chunk.data(), static_cast<int>(n)) == n);
    }
  }

  std::string take_client_output() {
    std::string bytes;
    char* data = nullptr;
    const long size = BIO_get_mem_data(client_out_, &data);
    if (size > 0) bytes.assign(data, static_cast<std::size_t>(size));
    check(BIO_reset(client_out_) == 1);
    return bytes;
  }

  // The client's new ciphertext to the wire, as one segment carrying plaintext from `plain_begin`.
  void client_output_to_wire(std::size_t plain_begin) {
    const std::string bytes = take_client_output();
    if (bytes.empty()) return;
    segments_.push_back({clean_.size(), clean_.size() + bytes.size(), plain_begin, sent_.size()});
    clean_ += bytes;
    wire_ += bytes;
    wire_changed_ = true;
  }

  // One SSL_write per record, so that a segment is one record.
  void client_write(std::size_t size, bool to_wire) {
    while (size > 0 && client_writable_) {
      const std::size_t piece = std::min<std::size_t>(size, 16384);
      std::string data(piece, '\0');
      for (std::size_t i = 0; i < piece; ++i) data[i] = pattern(sent_.size() + i, 0);
      const std::size_t cipher_begin = BIO_ctrl_pending(client_out_);
      const int result = SSL_write(client_.get(), data.data(), static_cast<int>(piece));
      check(result == static_cast<int>(piece));
      const std::size_t plain_begin = sent_.size();
      sent_ += data;
      if (to_wire) {
        client_output_to_wire(plain_begin);
      } else {
        early_records_.push_back(
            {cipher_begin, BIO_ctrl_pending(client_out_), plain_begin, sent_.size()});
      }
      size -= piece;
    }
  }

  void step() {
    switch (input_.ConsumeIntegralInRange<int>(0, 9)) {
      case 0:
        if (sent_.size() < 512 * 1024) {
          client_write(input_.ConsumeIntegralInRange<std::size_t>(1, 20000), true);
        }
        break;
      case 1:
      case 2:  // the most common: a socket read's worth
        deliver(input_.ConsumeIntegralInRange<std::size_t>(0, 20000));
        break;
      case 3:
        corrupt();
        break;
      case 4:
        if (client_writable_) {
          SSL_shutdown(client_.get());
          client_writable_ = false;
          close_sent_ = true;
          client_output_to_wire(sent_.size());
          close_end_ = clean_.size();
        }
        break;
      case 5:
        update_keys();
        break;
      case 6:
        server_write(input_.ConsumeIntegralInRange<std::size_t>(1, 20000));
        break;
      case 7:
        flush_server_output();
        break;
      case 8:
        deliver_all();
        break;
      default:
        insert(wire_.size(), raw_record());
        break;
    }
  }

  // A record header with any type and length, and a body of the input's bytes.
  std::string raw_record() {
    std::string record(5, '\0');
    record[0] = static_cast<char>(input_.ConsumeIntegral<std::uint8_t>());
    record[1] = 3;
    record[2] = static_cast<char>(input_.ConsumeIntegralInRange<std::uint8_t>(1, 4));
    const auto body = input_.ConsumeBytes<char>(input_.ConsumeIntegralInRange<std::size_t>(0, 64));
    const auto length =
        input_.ConsumeBool() ? body.size() : input_.ConsumeIntegral<std::uint16_t>();
    record[3] = static_cast<char>(length >> 8);
    record[4] = static_cast<char>(length & 0xff);
    record.append(body.begin(), body.end());
    return record;
  }

  void corrupt() {
    const std::size_t undelivered = wire_.size() - delivered_;
    const std::size_t at = delivered_ + input_.ConsumeIntegralInRange<std::size_t>(0, undelivered);
    switch (input_.ConsumeIntegralInRange<int>(0, 2)) {
      case 0:
        if (at < wire_.size()) {
          wire_[at] = static_cast<char>(wire_[at] ^ input_.ConsumeIntegralInRange<int>(1, 255));
          wire_changed_ = true;
        }
        break;
      case 1: {
        const auto bytes = input_.ConsumeBytes<char>(input_.ConsumeIntegralInRange<int>(1, 32));
        insert(at, std::string(bytes.begin(), bytes.end()));
        break;
      }
      default: {
        const std::size_t count =
            std::min(wire_.size() - at, input_.ConsumeIntegralInRange<std::size_t>(1, 64));
        if (count > 0) {
          wire_.erase(at, count);
          wire_changed_ = true;
        }
        break;
      }
    }
  }

  void insert(std::size_t at, const std::string& bytes) {
    if (bytes.empty()) return;
    wire_.insert(at, bytes);
    wire_changed_ = true;
  }

  // Where the wire first differs from what the client wrote (npos: nowhere). Flips, inserts and
  // drops may undo each other, so this compares rather than remembers.
  std::size_t corruption() {
    if (wire_changed_) {
      wire_changed_ = false;
      const std::size_t common = std::min(wire_.size(), clean_.size());
      const auto [at, unused] =
          std::mismatch(wire_.begin(), wire_.begin() + common, clean_.begin());
      const auto offset = static_cast<std::size_t>(at - wire_.begin());
      corrupt_at_ = offset < common || wire_.size() != clean_.size() ? offset : std::string::npos;
    }
    return corrupt_at_;
  }

  // How much of the client's plaintext may be read: all of it, or what the records before the
  // one holding the first corrupted byte carry.
  std::size_t readable_limit() {
    const std::size_t at = corruption();
    if (at == std::string::npos) return sent_.size();
    std::size_t limit = sent_.size();
    for (const Segment& s : segments_) {
      if (s.wire_begin <= at && at < s.wire_end) return s.plain_begin;
      if (s.wire_end <= at) limit = s.plain_end;
    }
    return limit;
  }

  void update_keys() {
    if (!client_writable_) return;
    if (tls13_) {
      const int type =
          input_.ConsumeBool() ? SSL_KEY_UPDATE_REQUESTED : SSL_KEY_UPDATE_NOT_REQUESTED;
      check(SSL_key_update(client_.get(), type) == 1);
      check(SSL_do_handshake(client_.get()) == 1);
    } else {
      // Refused by the server (no_renegotiation); the client is stuck in its handshake after.
      check(SSL_renegotiate(client_.get()) == 1);
      SSL_do_handshake(client_.get());
      client_writable_ = false;
      client_reads_ = false;
    }
    client_output_to_wire(sent_.size());
  }

  // One read_buffer()/given() of up to `size` bytes, then reads as the connection does. Returns
  // how many were given (none once a closed or failed session stopped taking them).
  std::size_t deliver(std::size_t size) {
    const asio::mutable_buffer space = records_->read_buffer();
    check_space(space);
    const std::size_t n = std::min({size, space.size(), wire_.size() - delivered_});
    std::memcpy(space.data(), wire_.data() + delivered_, n);
    records_->given(n);
    delivered_ += n;
    read_all();
    return n;
  }

  void deliver_all() {
    while (delivered_ < wire_.size() && deliver(wire_.size() - delivered_) > 0) {
    }
  }

  void check_space(asio::mutable_buffer space) {
    const auto* begin = static_cast<const char*>(space.data());
    const auto* end = begin + space.size();
    const auto* object = reinterpret_cast<const char*>(records_.get());
    check(begin >= object && end <= object + sizeof(TlsRecords));
    if (buffer_end_ == nullptr) buffer_end_ = end;
    check(end == buffer_end_);
    const auto pending =
        static_cast<std::size_t>(BIO_ctrl_pending(SSL_get_rbio(tls_->native_handle())));
    check(space.size() + pending == TlsRecords::kBufferSize);
    if (state_ == TlsReadState::want_read) check(space.size() > 0);
  }

  void read_all() {
    for (;;) {
      const TlsRead read = records_->read(out_.data(), out_.size());
      if (read.state != TlsReadState::data) {
        if (state_ == TlsReadState::failed) check(read.state == TlsReadState::failed);
        if (state_ == TlsReadState::closed) check(read.state != TlsReadState::want_read);
        state_ = read.state;
        return;
      }
      check(state_ != TlsReadState::failed && state_ != TlsReadState::closed);
      check(read.size > 0 && read.size <= out_.size());
      check(received_.size() + read.size <= readable_limit());
      check(std::memcmp(out_.data(), sent_.data() + received_.size(), read.size) == 0);
      received_.append(out_.data(), read.size);
    }
  }

  bool server_live() const {
    return state_ != TlsReadState::failed && state_ != TlsReadState::closed;
  }

  void server_write(std::size_t size) {
    if (!server_live()) return;
    std::string data(size, '\0');
    for (std::size_t i = 0; i < size; ++i) data[i] = pattern(written_.size() + i, 77);
    check(records_->write(data.data(), data.size()));
    written_ += data;
  }

  // The server's records (writes, key update answers, alerts) to the client, which reads them.
  void flush_server_output() {
    std::string& output = records_->pending_output();
    if (!output.empty()) {
      check(BIO_write(client_in_, output.data(), static_cast<int>(output.size())) ==
            static_cast<int>(output.size()));
      output.clear();
    }
    if (!client_reads_) return;
    std::array<char, 16384> plain{};
    for (;;) {
      const int n = SSL_read(client_.get(), plain.data(), static_cast<int>(plain.size()));
      if (n > 0) {
        const auto size = static_cast<std::size_t>(n);
        check(decrypted_.size() + size <= written_.size());
        check(std::memcmp(plain.data(), written_.data() + decrypted_.size(), size) == 0);
        decrypted_.append(plain.data(), size);
        continue;
      }
      const int error = SSL_get_error(client_.get(), n);
      if (error != SSL_ERROR_WANT_READ) {
        // Only an alert of the server's, after a failure, may end the client's reading.
        check(state_ == TlsReadState::failed);
        client_reads_ = false;
        client_writable_ = false;
      }
      ERR_clear_error();
      return;
    }
  }

  void finish() {
    deliver_all();
    const std::size_t corrupt_at = corruption();
    if (corrupt_at == std::string::npos) {
      check(received_ == sent_);
      check(state_ == (close_sent_ ? TlsReadState::closed : TlsReadState::want_read));
    } else {
      // More than the longest record after the corruption, so that its record is complete.
      if (client_writable_) {
        client_write(20000, true);
      } else {
        wire_.append(20000, '\0');
      }
      deliver_all();
      const bool closed_first = close_sent_ && close_end_ <= corrupt_at;
      check(state_ == (closed_first ? TlsReadState::closed : TlsReadState::failed));
    }
    if (server_live()) {
      server_write(1000);
      flush_server_output();
      if (client_reads_) check(decrypted_ == written_);
    }
  }

  asio::io_context& io_;
  FuzzedDataProvider& input_;
  int client_fd_ = -1;
  int server_fd_ = -1;  // owned by tls_
  std::unique_ptr<TlsStream> tls_;
  std::unique_ptr<TlsRecords> records_;  // destroyed before tls_, which owns the SSL
  SslPtr client_;
  BIO* client_in_ = nullptr;   // owned by client_
  BIO* client_out_ = nullptr;  // owned by client_
  bool tls13_ = false;
  bool client_writable_ = true;
  bool client_reads_ = true;
  bool close_sent_ = false;
  std::size_t close_end_ = 0;
  std::string out_;

  std::string sent_;      // client plaintext
  std::string received_;  // what the server read of it
  std::string wire_;      // client ciphertext after the take-over
  std::size_t delivered_ = 0;
  std::vector<Segment> segments_;
  std::vector<Segment> early_records_;  // in the client's output buffer of the handshake's end
  std::string clean_;  // the wire as the client wrote it (segments_ and close_end_ are in it)
  bool wire_changed_ = false;
  std::size_t corrupt_at_ = std::string::npos;
  TlsReadState state_ = TlsReadState::want_read;
  const char* buffer_end_ = nullptr;

  std::string written_;    // server plaintext
  std::string decrypted_;  // what the client read of it
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Contexts contexts;
  static asio::io_context io;
  FuzzedDataProvider input(data, size);
  Session session(contexts, io, input);
  session.run();
  return 0;
}
