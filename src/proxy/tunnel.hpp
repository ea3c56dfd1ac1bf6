// An upgraded connection (WebSocket and the like) after its 101: both connections and the
// splice between them (proxy/splice.hpp), on their own.
//
// The session that relayed the handshake ends there: its coroutine frames (the request's
// parser and fields, the proxying and relaying frames) would otherwise stay allocated for the
// whole life of the tunnel, often hours, and were most of a tunnel's memory (bench: RSS per
// WebSocket tunnel). The tunnel counts as an open connection (ctx.sessions) until it closes,
// and then writes the handshake's access-log line with the bytes and times of the whole tunnel.
#pragma once

#include <chrono>
#include <memory>

#include "log/access_log.hpp"
#include "net/stream.hpp"
#include "proxy/proxy_context.hpp"

namespace hipache::proxy {

struct UpstreamConnection;

// `entry`: the handshake's access-log line (texts copied; status, bytes so far); `started` and
// `backend_started`: when the request came and when it went to the backend. Both sides close
// when both have closed their halves, on an error, or after tcpTimeout without a byte.
void start_tunnel(net::AnyStream client, std::unique_ptr<UpstreamConnection> upstream,
                  ProxyContext& ctx, const log::AccessLogEntry& entry,
                  std::chrono::steady_clock::time_point started,
                  std::chrono::steady_clock::time_point backend_started);

}  // namespace hipache::proxy
