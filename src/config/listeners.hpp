// The http and https sections (and the 0.3.x listening keys) of the config file.
#pragma once

#include "config/reader.hpp"
#include "hipache/config.hpp"

namespace hipache::config {

// Fills config.listeners, config.https and config.cert_dir; `server` is the server section (for
// the 0.3.x keys), or nullptr.
void parse_listeners(const Reader& reader, const json& root, const json* server, Config& config);

}  // namespace hipache::config
