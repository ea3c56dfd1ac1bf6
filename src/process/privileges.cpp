#include "process/privileges.hpp"

#include <grp.h>
#include <pwd.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace hipache::process {

namespace {

bool is_number(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

uid_t resolve_user(const std::string& user, gid_t& primary_group) {
  const passwd* pw =
      is_number(user) ? getpwuid(static_cast<uid_t>(std::stoul(user))) : getpwnam(user.c_str());
  if (pw == nullptr) {
    if (is_number(user)) {
      primary_group = static_cast<gid_t>(std::stoul(user));
      return static_cast<uid_t>(std::stoul(user));
    }
    throw std::runtime_error("user \"" + user + "\" does not exist");
  }
  primary_group = pw->pw_gid;
  return pw->pw_uid;
}

gid_t resolve_group(const std::string& group) {
  if (is_number(group)) return static_cast<gid_t>(std::stoul(group));
  const struct group* gr = getgrnam(group.c_str());
  if (gr == nullptr) throw std::runtime_error("group \"" + group + "\" does not exist");
  return gr->gr_gid;
}

}  // namespace

void drop_privileges(const std::string& user, const std::string& group) {
  if (::geteuid() != 0 || user == "root" || user == "0") return;
  gid_t user_group = 0;
  const uid_t uid = resolve_user(user, user_group);
  const gid_t gid = group.empty() || group == user ? user_group : resolve_group(group);
  if (::setgroups(1, &gid) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) {
    throw std::runtime_error("cannot switch to user " + user + ": " + std::strerror(errno));
  }
  spdlog::info("running as user {} (uid {}, gid {})", user, uid, gid);
}

}  // namespace hipache::process
