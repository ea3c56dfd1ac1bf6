// Error page bodies (SPEC section 7): error_<code>.html from server.staticDir, else
// error_default.html there, else our built-in page. Loaded once per worker start (and reload).
#pragma once

#include <map>
#include <optional>
#include <string>

namespace hipache::proxy {

class ErrorPages {
 public:
  explicit ErrorPages(const std::optional<std::string>& static_dir);
  const std::string& body(int status) const;

 private:
  std::map<int, std::string> pages_;
  std::optional<std::string> custom_default_;
  mutable std::map<int, std::string> builtin_;
};

}  // namespace hipache::proxy
