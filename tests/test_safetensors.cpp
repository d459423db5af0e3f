// safetensors reader/writer: round trips, every kind of corrupt file rejected with a message
// naming the file and the problem, and atomic writes that leave nothing behind on failure.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "revox/io/safetensors.hpp"

#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using revox::io::Dtype;
using revox::io::SafeTensor;

namespace {

class TempDir : public revox_test::TempDir {
 public:
  TempDir() : revox_test::TempDir("revox_test_safetensors") {}
};

std::vector<std::string> entries(const fs::path& directory) {
  return revox_test::directory_entries(directory);
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A file made by hand: the length field (given, or the header's size), header, data.
void write_raw(const fs::path& path, const std::string& header, std::size_t data_bytes,
               std::uint64_t length = std::numeric_limits<std::uint64_t>::max()) {
  if (length == std::numeric_limits<std::uint64_t>::max()) length = header.size();
  std::ofstream out(path, std::ios::binary);
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((length >> (8 * i)) & 0xff));
  out << header << std::string(data_bytes, '\x01');
}

SafeTensor raw_tensor(Dtype dtype, std::vector<std::int64_t> shape,
                      std::vector<std::uint8_t> bytes) {
  SafeTensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.bytes = std::move(bytes);
  return t;
}

}  // namespace

TEST_CASE("safetensors round trip keeps dtypes, shapes, values and metadata",
          "[io][safetensors]") {
  TempDir dir;
  const fs::path path = dir / "model.safetensors";
  std::map<std::string, SafeTensor> tensors;
  tensors["weight"] = revox::io::make_safetensor<double>({2, 3}, {1.5, -2.0, 0.0, 3.25, 1e-300, -7});
  tensors["half"] = revox::io::make_safetensor<float>({5}, {1.f, -0.5f, 3.0e38f, 0.f, 2.f});
  tensors["step"] = revox::io::make_safetensor<std::int64_t>({}, {-1234567890123LL});
  tensors["counts"] = revox::io::make_safetensor<std::int32_t>({2, 2}, {1, -2, 3, -4});
  tensors["empty"] = revox::io::make_safetensor<std::int32_t>({2, 0, 3}, {});
  tensors["mask"] = revox::io::make_safetensor<std::uint8_t>({7}, {0, 1, 2, 3, 4, 250, 255});
  // F16: 1, -2.5, smallest subnormal 2^-24, +inf.  BF16: 1, -2.
  tensors["f16"] = raw_tensor(Dtype::F16, {4}, {0x00, 0x3c, 0x00, 0xc1, 0x01, 0x00, 0x00, 0x7c});
  tensors["bf16"] = raw_tensor(Dtype::BF16, {1, 2}, {0x80, 0x3f, 0x00, 0xc0});
  const std::map<std::string, std::string> metadata{{"format", "pt"}, {"epoch", "12"}};
  revox::io::write_safetensors(path, tensors, metadata);

  CHECK(entries(dir.path()) == std::vector<std::string>{"model.safetensors"});
  const auto file = revox::io::read_safetensors(path);
  CHECK(file.metadata == metadata);
  CHECK(file.meta("epoch") == "12");
  REQUIRE(file.tensors.size() == tensors.size());
  for (const auto& [name, tensor] : tensors) {
    INFO("tensor " << name);
    const auto& back = file.at(name);
    CHECK(back.dtype == tensor.dtype);
    CHECK(back.shape == tensor.shape);
    CHECK(back.bytes == tensor.bytes);
  }
  CHECK(file.at("weight").to_double() == std::vector<double>{1.5, -2.0, 0.0, 3.25, 1e-300, -7});
  CHECK(file.at("half").to_float() == std::vector<float>{1.f, -0.5f, 3.0e38f, 0.f, 2.f});
  CHECK(file.at("step").values<std::int64_t>() == std::vector<std::int64_t>{-1234567890123LL});
  CHECK(file.at("step").numel() == 1);
  CHECK(file.at("counts").to_double() == std::vector<double>{1, -2, 3, -4});
  CHECK(file.at("empty").to_double().empty());
  CHECK(file.at("mask").to_double() == std::vector<double>{0, 1, 2, 3, 4, 250, 255});
  const auto f16 = file.at("f16").to_float();
  CHECK(f16[0] == 1.f);
  CHECK(f16[1] == -2.5f);
  CHECK(f16[2] == std::ldexp(1.f, -24));
  CHECK(f16[3] == std::numeric_limits<float>::infinity());
  CHECK(file.at("bf16").to_double() == std::vector<double>{1.0, -2.0});

  // The file layout: header padded with spaces to a multiple of 8, every tensor aligned
  // to its element size.
  const auto header = revox::io::read_safetensors_header(path);
  CHECK(header.header_bytes % 8 == 0);
  const std::string bytes = slurp(path);
  CHECK(bytes[8] == '{');
  const std::string text = bytes.substr(8, static_cast<std::size_t>(header.header_bytes));
  CHECK(text.find_first_not_of(' ', text.rfind('}') + 1) == std::string::npos);
  for (const auto& [name, info] : header.tensors) {
    INFO("tensor " << name);
    CHECK((8 + header.header_bytes + info.begin) % revox::io::dtype_size(info.dtype) == 0);
  }

  // Reading by name reads only those.
  const auto some = revox::io::read_safetensors(path, {"counts", "f16"});
  CHECK(some.tensors.size() == 2);
  CHECK(some.at("counts").to_double() == std::vector<double>{1, -2, 3, -4});
  CHECK_THROWS_WITH(revox::io::read_safetensors(path, {"nope"}),
                    Catch::Contains(path.string()) && Catch::Contains("no tensor named 'nope'"));
  CHECK_THROWS_WITH(file.at("nope"), Catch::Contains(path.string()) && Catch::Contains("'nope'"));
  CHECK_THROWS_WITH(file.meta("nope"), Catch::Contains("no metadata entry 'nope'"));
}

TEST_CASE("safetensors writer replaces an existing file and writes empty files",
          "[io][safetensors]") {
  TempDir dir;
  const fs::path path = dir / "ckpt.safetensors";
  revox::io::write_safetensors(path, {{"a", revox::io::make_safetensor<double>({1}, {1.0})}});
  revox::io::write_safetensors(path, {{"b", revox::io::make_safetensor<float>({2}, {2.f, 3.f})}},
                               {{"k", "v"}});
  const auto file = revox::io::read_safetensors(path);
  CHECK_FALSE(file.contains("a"));
  CHECK(file.at("b").to_double() == std::vector<double>{2.0, 3.0});
  CHECK(entries(dir.path()) == std::vector<std::string>{"ckpt.safetensors"});

  const fs::path empty = dir / "empty.safetensors";
  revox::io::write_safetensors(empty, {});
  CHECK(revox::io::read_safetensors(empty).tensors.empty());
  CHECK(fs::file_size(empty) % 8 == 0);
}

TEST_CASE("safetensors reader rejects corrupt files naming the file and the problem",
          "[io][safetensors]") {
  TempDir dir;
  const std::string ok_entry = R"("a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]})";
  struct Case {
    const char* name;
    std::string header;
    std::size_t data_bytes;
    std::uint64_t length;
    const char* phrase;
  };
  const std::uint64_t auto_length = std::numeric_limits<std::uint64_t>::max();
  const std::vector<Case> cases = {
      {"valid", "{" + ok_entry + "}", 16, auto_length, nullptr},
      {"header_longer_than_file", "{" + ok_entry + "}", 16, 1000, "exceeds the"},
      {"absurd_header", "{" + ok_entry + "}", 16, 1ull << 40, "is absurd"},
      {"invalid_json", R"({"a": {"dtype": )", 0, auto_length, "not valid JSON"},
      {"root_not_object", "[1, 2]", 0, auto_length, "not a JSON object"},
      {"entry_not_object", R"({"a": 3})", 0, auto_length, "entry is not a JSON object"},
      {"missing_dtype", R"({"a": {"shape": [2], "data_offsets": [0, 16]}})", 16, auto_length,
       "tensor 'a': missing field \"dtype\""},
      {"missing_shape", R"({"a": {"dtype": "F64", "data_offsets": [0, 16]}})", 16, auto_length,
       "tensor 'a': missing field \"shape\""},
      {"missing_offsets", R"({"a": {"dtype": "F64", "shape": [2]}})", 16, auto_length,
       "tensor 'a': missing field \"data_offsets\""},
      {"unknown_dtype", R"({"a": {"dtype": "F128", "shape": [2], "data_offsets": [0, 16]}})", 16,
       auto_length, "unknown dtype \"F128\""},
      {"negative_shape", R"({"a": {"dtype": "F64", "shape": [-2], "data_offsets": [0, 16]}})", 16,
       auto_length, "negative extent"},
      {"fractional_shape", R"({"a": {"dtype": "F64", "shape": [2.5], "data_offsets": [0, 16]}})",
       16, auto_length, "shape entries must be integers"},
      {"huge_shape",
       R"({"a": {"dtype": "F64", "shape": [4294967296, 4294967296], "data_offsets": [0, 16]}})", 16,
       auto_length, "is too large"},
      {"byte_count", R"({"a": {"dtype": "F64", "shape": [3], "data_offsets": [0, 16]}})", 16,
       auto_length, "byte count 16 does not match"},
      {"negative_offset", R"({"a": {"dtype": "F64", "shape": [0], "data_offsets": [-8, -8]}})", 0,
       auto_length, "data_offsets must be non-negative"},
      {"offsets_not_pair", R"({"a": {"dtype": "F64", "shape": [2], "data_offsets": [0]}})", 16,
       auto_length, "data_offsets must be [begin, end]"},
      {"offsets_reversed", R"({"a": {"dtype": "U8", "shape": [0], "data_offsets": [8, 0]}})", 8,
       auto_length, "end before they begin"},
      {"out_of_buffer", R"({"a": {"dtype": "F64", "shape": [2], "data_offsets": [8, 24]}})", 16,
       auto_length, "out of the data section of 16 bytes"},
      {"overlap",
       R"({"a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]},
           "b": {"dtype": "F64", "shape": [2], "data_offsets": [8, 24]}})",
       24, auto_length, "overlap tensor 'a'"},
      {"gap", R"({"a": {"dtype": "F64", "shape": [1], "data_offsets": [8, 16]}})", 16, auto_length,
       "leave a gap of 8 bytes"},
      {"data_section_too_long", "{" + ok_entry + "}", 24, auto_length,
       "data section size mismatch: the file holds 24 data bytes but the tensors cover 16"},
      {"metadata_not_string", R"({"__metadata__": {"epoch": 3}})", 0, auto_length,
       "__metadata__ entry 'epoch' is not a string"},
      {"metadata_not_object", R"({"__metadata__": "x"})", 0, auto_length,
       "__metadata__ is not a JSON object"},
  };
  for (const auto& c : cases) {
    const fs::path path = dir / (std::string(c.name) + ".safetensors");
    write_raw(path, c.header, c.data_bytes, c.length);
    INFO("case " << c.name);
    if (c.phrase == nullptr) {
      CHECK(revox::io::read_safetensors(path).at("a").shape == std::vector<std::int64_t>{2});
    } else {
      CHECK_THROWS_AS(revox::io::read_safetensors(path), revox::Error);
      CHECK_THROWS_WITH(revox::io::read_safetensors(path),
                        Catch::Contains(path.string()) && Catch::Contains(c.phrase));
      CHECK_THROWS_WITH(revox::io::read_safetensors_header(path), Catch::Contains(c.phrase));
    }
  }

  const fs::path missing = dir / "missing.safetensors";
  CHECK_THROWS_WITH(revox::io::read_safetensors(missing),
                    Catch::Contains(missing.string()) && Catch::Contains("does not exist"));
  CHECK_THROWS_WITH(revox::io::read_safetensors(dir.path()),
                    Catch::Contains(dir.path().string()) && Catch::Contains("not a regular file"));
  const fs::path tiny = dir / "tiny.safetensors";
  std::ofstream(tiny, std::ios::binary) << "abcde";
  CHECK_THROWS_WITH(revox::io::read_safetensors(tiny),
                    Catch::Contains(tiny.string()) && Catch::Contains("file is too short (5 bytes)"));
}

TEST_CASE("safetensors writer fails cleanly: no temp files, target untouched, path named",
          "[io][safetensors]") {
  TempDir dir;
  const auto one = revox::io::make_safetensor<double>({1}, {1.0});

  SECTION("target directory missing") {
    const fs::path path = dir / "no_such_dir" / "x.safetensors";
    CHECK_THROWS_WITH(revox::io::write_safetensors(path, {{"a", one}}),
                      Catch::Contains(path.string()) &&
                          Catch::Contains("cannot create a temporary file"));
    CHECK(entries(dir.path()).empty());
  }
  SECTION("target is a directory: the rename fails after the temp file was written") {
    const fs::path path = dir / "occupied";
    fs::create_directories(path / "inside");
    CHECK_THROWS_WITH(revox::io::write_safetensors(path, {{"a", one}}),
                      Catch::Contains(path.string()) && Catch::Contains("renaming"));
    CHECK(entries(dir.path()) == std::vector<std::string>{"occupied"});
    CHECK(entries(path) == std::vector<std::string>{"inside"});
  }
  SECTION("invalid tensors never touch an existing file") {
    const fs::path path = dir / "keep.safetensors";
    revox::io::write_safetensors(path, {{"a", one}}, {{"v", "1"}});
    const std::string before = slurp(path);
    auto bad = one;
    bad.bytes.pop_back();
    CHECK_THROWS_WITH(revox::io::write_safetensors(path, {{"a", bad}}),
                      Catch::Contains(path.string()) && Catch::Contains("holds 7 bytes"));
    auto negative = one;
    negative.shape = {-1};
    CHECK_THROWS_WITH(revox::io::write_safetensors(path, {{"a", negative}}),
                      Catch::Contains(path.string()) && Catch::Contains("negative extent"));
    CHECK_THROWS_WITH(revox::io::write_safetensors(path, {{"__metadata__", one}}),
                      Catch::Contains(path.string()) && Catch::Contains("reserved"));
    CHECK(slurp(path) == before);
    CHECK(entries(dir.path()) == std::vector<std::string>{"keep.safetensors"});
  }
}
