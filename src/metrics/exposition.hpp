// The Prometheus text exposition format (version 0.0.4) of a metrics snapshot: what
// GET /metrics on the admin listener answers. docs/operations.md lists every metric.
#pragma once

#include <string>
#include <string_view>

#include "metrics/table.hpp"

namespace hipache::metrics {

inline constexpr std::string_view kExpositionContentType =
    "text/plain; version=0.0.4; charset=utf-8";

std::string format_prometheus(const Snapshot& snapshot);

// A label value with \, " and newline escaped as the format requires.
std::string escape_label_value(std::string_view value);

}  // namespace hipache::metrics
