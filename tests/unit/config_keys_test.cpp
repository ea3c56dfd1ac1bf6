// The key table against docs/configuration.md: every key it reads is documented with the default
// it really has, and the docs' key tables name no key the loader does not know.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "config/config_keys.hpp"

namespace hipache::config {
namespace {

using Path = std::pair<std::string, std::string>;  // section, name

std::string read_docs() {
  std::ifstream in(HIPACHE_SOURCE_DIR "/docs/configuration.md");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A default as the docs write it: JSON, with whole numbers without ".0".
std::string doc_text(const json& value) {
  if (value.is_number_float() && value.get<double>() == std::floor(value.get<double>())) {
    return std::to_string(static_cast<long long>(value.get<double>()));
  }
  return value.dump();
}

// Markdown code: `text`.
std::string quoted(const std::string& text) {
  std::string out = "`";
  out += text;
  out += '`';
  return out;
}

std::vector<std::string> cells(const std::string& row) {
  std::vector<std::string> out;
  std::stringstream stream(row.substr(1));
  for (std::string cell; std::getline(stream, cell, '|');) {
    const auto begin = cell.find_first_not_of(' ');
    const auto end = cell.find_last_not_of(' ');
    out.push_back(begin == std::string::npos ? "" : cell.substr(begin, end - begin + 1));
  }
  return out;
}

// The Default cell of every row of the docs' "| Key | Type | Default |" tables, by the section
// their "## `name`" heading names ("" for the top-level keys driver, user and group).
std::map<Path, std::string> documented_keys(const std::string& docs) {
  std::set<std::string> sections;
  for (const KeyInfo& key : all_keys()) sections.insert(key.section);
  std::map<Path, std::string> out;
  std::string section;
  bool in_key_table = false;
  std::stringstream lines(docs);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("## ")) {
      const auto open = line.find('`');
      const auto close = line.find('`', open + 1);
      const std::string name =
          open == std::string::npos ? "" : line.substr(open + 1, close - open - 1);
      section = sections.contains(name) ? name : "";
    }
    if (!line.starts_with("|")) {
      in_key_table = false;
      continue;
    }
    const std::vector<std::string> row = cells(line);
    if (row.size() >= 3 && row[0] == "Key" && row[2] == "Default") {
      in_key_table = true;
    } else if (in_key_table && row.size() >= 3 && row[0].starts_with("`")) {
      out[{section, row[0].substr(1, row[0].size() - 2)}] = row[2];
    }
  }
  return out;
}

TEST(ConfigKeys, EveryKeyIsDocumentedWithItsDefault) {
  const std::string docs = read_docs();
  ASSERT_FALSE(docs.empty()) << "cannot read docs/configuration.md";
  const std::map<Path, std::string> documented = documented_keys(docs);
  for (const KeyInfo& key : all_keys()) {
    const std::string path = key.section.empty() ? key.name : key.section + "." + key.name;
    std::string expected(key.doc_default);
    if (expected.empty()) expected = quoted(doc_text(key.default_value));
    if (!key.listed) {
      EXPECT_NE(docs.find(quoted(key.name)), std::string::npos) << path;
    } else if (key.section.find('.') != std::string::npos) {
      // A nested object's keys are described in its prose: {"size": <..., default 1000>, ...}.
      const auto at = docs.find("\"" + key.name + "\": <");
      if (at == std::string::npos) {
        ADD_FAILURE() << path << " is not documented";
        continue;
      }
      const std::string text = docs.substr(at, docs.find('>', at) - at);
      EXPECT_NE(text.find("default " + doc_text(key.default_value)), std::string::npos)
          << path << ": documented as " << text;
    } else {
      const auto it = documented.find({key.section, key.name});
      if (it == documented.end()) {
        ADD_FAILURE() << path << " is not in the docs' key tables";
        continue;
      }
      EXPECT_TRUE(it->second.starts_with(expected))
          << path << ": the docs say " << it->second << ", the code " << expected;
    }
  }
}

TEST(ConfigKeys, DocsListNoUnknownKey) {
  std::set<Path> known;
  for (const KeyInfo& key : all_keys()) known.insert({key.section, key.name});
  const std::map<Path, std::string> documented = documented_keys(read_docs());
  EXPECT_GT(documented.size(), 30U) << "the docs' key tables were not found";
  for (const auto& [path, default_cell] : documented) {
    EXPECT_TRUE(known.contains(path))
        << path.first << "." << path.second << " is documented but not in the key table";
  }
}

TEST(ConfigKeys, NamesAreUniquePerSection) {
  std::set<Path> seen;
  for (const KeyInfo& key : all_keys()) {
    EXPECT_TRUE(seen.insert({key.section, key.name}).second) << key.section << "." << key.name;
  }
}

}  // namespace
}  // namespace hipache::config
