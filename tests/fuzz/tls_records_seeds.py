#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_tls_records: operations laid out as libFuzzer's
FuzzedDataProvider hands them to fuzz_tls_records.cpp (numbers taken from the end of the input,
most significant byte first; byte strings from the front).

    python3 tests/fuzz/tls_records_seeds.py tests/fuzz/corpus/fuzz_tls_records
"""
import os
import sys

# Operation numbers of Session::step().
WRITE, DELIVER, CORRUPT, CLOSE, KEY_UPDATE, SERVER_WRITE, FLUSH, DELIVER_ALL, RAW = (
    0, 1, 3, 4, 5, 6, 7, 8, 9)
FLIP, INSERT, DROP = 0, 1, 2


class Seed:
    def __init__(self):
        self.front = b""
        self.numbers = []  # bytes in the order they are consumed from the end

    def number(self, low, high, value):
        span, value = high - low, value - low
        assert 0 <= value <= span
        count = 0
        while count < 8 and span >> (8 * count):
            count += 1
        self.numbers += [(value >> (8 * (count - 1 - i))) & 0xFF for i in range(count)]

    def flag(self, value):
        self.number(0, 255, 1 if value else 0)

    def data(self):
        return self.front + bytes(reversed(self.numbers))

    # Session::run()'s choices before the handshake.
    def hello(self, tls13, suite, early, asio_read, read_size):
        self.flag(tls13)
        self.number(0, 2 if tls13 else 3, suite)
        if tls13:
            self.number(0, 40000, early)
        self.number(0, 64, asio_read)
        self.number(1, 17000, read_size)

    def op(self, code):
        self.number(0, 9, code)

    def write(self, size):
        self.op(WRITE)
        self.number(1, 20000, size)

    def deliver(self, size):
        self.op(DELIVER)
        self.number(0, 20000, size)

    def corrupt(self, undelivered, at, kind):
        self.op(CORRUPT)
        self.number(0, undelivered, at)
        self.number(0, 2, kind)

    def flip(self, undelivered, at, mask):
        self.corrupt(undelivered, at, FLIP)
        self.number(1, 255, mask)

    def insert(self, undelivered, at, data):
        self.corrupt(undelivered, at, INSERT)
        self.number(1, 32, len(data))
        self.front += data

    def drop(self, undelivered, at, count):
        self.corrupt(undelivered, at, DROP)
        self.number(1, 64, count)

    def key_update(self, tls13, requested=True):
        self.op(KEY_UPDATE)
        if tls13:
            self.flag(requested)

    def server_write(self, size):
        self.op(SERVER_WRITE)
        self.number(1, 20000, size)

    def raw(self, record_type, minor, body, length=None):
        self.op(RAW)
        self.number(0, 255, record_type)
        self.number(1, 4, minor)
        self.number(0, 64, len(body))
        self.front += body
        self.flag(length is None)
        if length is not None:
            self.number(0, 65535, length)


def seeds():
    s = Seed()  # TLS 1.3: pieces, a server write, a key update, close_notify
    s.hello(True, 0, 0, 0, 16384)
    s.write(5000)
    s.deliver(1000)
    s.deliver(3000)
    s.deliver(20000)
    s.server_write(3000)
    s.op(FLUSH)
    s.key_update(True, requested=True)
    s.write(200)
    s.op(DELIVER_ALL)
    s.op(FLUSH)
    s.server_write(100)
    s.op(CLOSE)
    s.op(DELIVER_ALL)
    s.op(FLUSH)
    yield "tls13_pieces_key_update_close", s

    s = Seed()  # TLS 1.3 ChaCha20: 500 bytes along with the Finished, 10 read through Asio
    s.hello(True, 2, 500, 10, 100)
    s.write(20000)
    s.deliver(7)
    s.deliver(100)
    s.op(DELIVER_ALL)
    s.key_update(True, requested=False)
    s.server_write(70)
    s.op(FLUSH)
    s.write(1)
    s.op(DELIVER_ALL)
    yield "tls13_early_data_asio_read", s

    s = Seed()  # TLS 1.3: 30000 bytes with the Finished, more than Asio reads at once
    s.hello(True, 0, 30000, 30, 16384)
    s.write(100)
    s.deliver(5000)
    s.op(DELIVER_ALL)
    yield "tls13_early_data_beyond_asio_read", s

    s = Seed()  # TLS 1.2 AES-GCM: one record (129 bytes), a bit flipped in it
    s.hello(False, 0, 0, 0, 4096)
    s.write(100)
    s.flip(129, 50, 1)
    s.op(DELIVER_ALL)
    yield "tls12_gcm_flip", s

    s = Seed()  # TLS 1.2 CBC: a renegotiation attempt, refused
    s.hello(False, 2, 0, 0, 1000)
    s.write(3000)
    s.deliver(500)
    s.server_write(50)
    s.op(FLUSH)
    s.key_update(False)
    s.write(10)
    s.op(DELIVER_ALL)
    s.op(FLUSH)
    yield "tls12_cbc_renegotiation", s

    s = Seed()  # TLS 1.3 AES-256: a record header's worth inserted first, then a raw record
    s.hello(True, 1, 0, 0, 16384)
    s.write(100)
    s.insert(122, 0, b"\x17\x03\x03")
    s.raw(23, 3, b"\x00" * 16, 16)
    s.op(DELIVER_ALL)
    yield "tls13_insert_raw_record", s

    s = Seed()  # TLS 1.3: two records (122 bytes each), 5 bytes dropped from the second
    s.hello(True, 0, 0, 0, 16384)
    s.write(100)
    s.write(100)
    s.drop(244, 122, 5)
    s.op(DELIVER_ALL)
    yield "tls13_drop", s


def main():
    directory = sys.argv[1]
    os.makedirs(directory, exist_ok=True)
    for name, seed in seeds():
        with open(os.path.join(directory, name), "wb") as out:
            out.write(seed.data())


if __name__ == "__main__":
    main()
