#pragma once

#include <string>

namespace hipache::process {

// When running as root, switches to `user`/`group` (names or numeric ids). "root"/"0" keeps
// root. Does nothing for non-root processes. Throws std::runtime_error when the switch fails.
void drop_privileges(const std::string& user, const std::string& group);

}  // namespace hipache::process
