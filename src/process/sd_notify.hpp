// systemd's readiness protocol without libsystemd: one datagram to $NOTIFY_SOCKET.
#pragma once

#include <string_view>

namespace hipache::process {

// Sends `state` (e.g. "READY=1") when running under systemd with Type=notify; else does nothing.
// Returns whether a message was sent.
bool sd_notify(std::string_view state);

}  // namespace hipache::process
