// fuzz/fuzz_brats.cpp — libFuzzer target for BraTS folder discovery
// (include/revox/data/brats.hpp: discover_brats_cases), which only looks at names.
//
// Input: a folder tree, as text. The first byte holds options: bit 0 require_segmentation,
// bit 1 accept_known_segmentation_aliases, bit 2 discover from the first folder the input
// creates instead of the tree's root. Every following line creates one entry under a fresh
// root folder:
//   a/b/c.nii.gz     an empty regular file (parent folders are created)
//   a/b/             a folder
//   a/b/c<TAB>d/e    a symbolic link a/b/c -> d/e (relative to a/b; may dangle)
//   a/b/c<TAB>       a regular file holding the bytes "x"
// Names may hold any byte but '/' and NUL (NUL becomes '_'); "." and ".." are dropped, so
// everything stays inside the root. At most 64 entries, 8 levels, 200 bytes a name.
// revox::Error is the expected outcome for a tree that holds no valid case. A successful
// discovery must return cases sorted by a unique id, each with 4 modality files (and a
// segmentation when required) that are regular files named after the case in its folder.
// Anything else is a finding (see fuzz_common.hpp).
#include <algorithm>
#include <cstdint>
#include <string>
#include <system_error>
#include <vector>

#include "fuzz_common.hpp"
#include "revox/data/brats.hpp"

namespace fs = std::filesystem;

namespace {

// Splits `text` into path components, dropping "", "." and "..".
std::vector<std::string> components(const std::string& text) {
  std::vector<std::string> parts;
  std::string part;
  auto flush = [&] {
    if (!part.empty() && part != "." && part != "..") parts.push_back(part.substr(0, 200));
    part.clear();
  };
  for (char c : text) {
    if (c == '/') {
      flush();
    } else {
      part += c == '\0' ? '_' : c;
    }
  }
  flush();
  return parts;
}

fs::path join(const fs::path& base, const std::vector<std::string>& parts) {
  fs::path p = base;
  for (const auto& part : parts) p /= part;
  return p;
}

void check_result(const std::vector<revox::data::BratsCase>& cases,
                  const revox::data::DiscoverOptions& options) {
  if (cases.empty()) revox_fuzz::finding("discover_brats_cases returned no case without an error");
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    if (i > 0 && !(cases[i - 1].id < c.id)) {
      revox_fuzz::finding("cases are not sorted by a unique id: '" + cases[i - 1].id + "', '" +
                          c.id + "'");
    }
    if (c.folder.filename().string() != c.id) {
      revox_fuzz::finding("case id '" + c.id + "' is not its folder's name");
    }
    auto check_file = [&](const fs::path& file, const char* role) {
      std::error_code ec;
      if (!fs::is_regular_file(file, ec)) {
        revox_fuzz::finding(std::string(role) + " '" + file.string() + "' is not a regular file");
      }
      if (file.parent_path() != c.folder) {
        revox_fuzz::finding(std::string(role) + " '" + file.string() + "' is not in the case folder");
      }
    };
    for (const auto& m : c.modalities) {
      check_file(m, "modality");
      const std::string name = m.filename().string();
      if (name.rfind(c.id, 0) != 0) {
        revox_fuzz::finding("modality '" + name + "' is not named after case '" + c.id + "'");
      }
    }
    if (c.segmentation) {
      check_file(*c.segmentation, "segmentation");
    } else if (options.require_segmentation) {
      revox_fuzz::finding("case '" + c.id + "' has no segmentation although one is required");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t flags = data[0];
  revox::data::DiscoverOptions options;
  options.require_segmentation = (flags & 1) != 0;
  options.accept_known_segmentation_aliases = (flags & 2) != 0;

  const fs::path root = revox_fuzz::scratch() / "root";
  std::error_code ec;
  fs::remove_all(root, ec);
  fs::create_directory(root);

  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  fs::path first_folder;
  std::size_t start = 0;
  for (int entries = 0; start <= text.size() && entries < 64; ++entries) {
    auto end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(start, end - start);
    start = end + 1;
    const auto tab = line.find('\t');
    const std::string name_text = line.substr(0, tab);
    auto parts = components(name_text);
    if (parts.empty() || parts.size() > 8) continue;
    const fs::path path = join(root, parts);
    const bool is_folder = tab == std::string::npos && !name_text.empty() && name_text.back() == '/';
    fs::create_directories(is_folder ? path : path.parent_path(), ec);
    if (ec) continue;  // a file is in the way: skip this entry
    if (!is_folder && fs::symlink_status(path, ec).type() != fs::file_type::not_found) continue;
    if (is_folder) {
      if (first_folder.empty()) first_folder = path;
    } else if (tab == std::string::npos) {
      revox_fuzz::write_file(path, nullptr, 0);
    } else {
      const auto target = components(line.substr(tab + 1));
      if (target.empty()) {
        const std::uint8_t x = 'x';
        revox_fuzz::write_file(path, &x, 1);
      } else {
        fs::create_symlink(join(fs::path(), target), path, ec);
      }
    }
  }
  const fs::path where = (flags & 4) != 0 && !first_folder.empty() ? first_folder : root;

  revox_fuzz::expect_only_revox_errors("discover_brats_cases", [&] {
    check_result(revox::data::discover_brats_cases(where, options), options);
  });
  return 0;
}
