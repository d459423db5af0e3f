// Preprocessed cases (revox/data/case_store.hpp) and the loader pieces
// (revox/data/loader.hpp): the crop keeps every non-zero voxel and z-scores as the
// uncropped volume does, files round-trip through the mapping, damage is named, the
// preprocessing resumes and reports failures, the cache stays under its limit, and the
// background loader gives the same items in the same order for any number of workers.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "revox/data/brats.hpp"
#include "revox/data/case_store.hpp"
#include "revox/data/loader.hpp"
#include "revox/data/phantom.hpp"
#include "revox/data/preprocess.hpp"

#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace revox;
using namespace revox::data;

namespace {


// A case of size (D, H, W) = (6, 7, 8) whose head occupies [1, 4] x [2, 5] x [1, 6], with a
// label voxel outside the head at (5, 6, 7) so the box must include it.
LoadedCase small_case() {
  LoadedCase c;
  c.id = "case_a";
  c.image = Tensor<float>::zeros(Shape5{1, 4, 6, 7, 8});
  Rng rng(3);
  for (index_t m = 0; m < 4; ++m) {
    for (index_t d = 1; d <= 4; ++d) {
      for (index_t h = 2; h <= 5; ++h) {
        for (index_t w = 1; w <= 6; ++w) {
          c.image.view().at(0, m, d, h, w) = static_cast<float>(10.0 + static_cast<double>(m) + rng.uniform01());
        }
      }
    }
  }
  auto labels = Tensor<std::uint8_t>::zeros(Shape5{1, 1, 6, 7, 8});
  labels.view().at(0, 0, 2, 3, 3) = 1;
  labels.view().at(0, 0, 2, 3, 4) = 2;
  labels.view().at(0, 0, 3, 3, 4) = 4;
  labels.view().at(0, 0, 5, 6, 7) = 2;
  c.labels = std::move(labels);
  c.label_convention = LabelConvention::brats2017;
  c.geometry.spacing = {1.0, 1.2, 1.5};
  return c;
}

}  // namespace

TEST_CASE("prepare_case: crops to the head and labels plus margin, z-scores as uncropped, "
          "lists the regions' voxels", "[case_store]") {
  LoadedCase original = small_case();
  Tensor<float> reference = original.image.clone();
  zscore_nonzero(reference, "case_a");
  const Tensor<std::uint8_t> labels = original.labels->clone();

  const PreparedCase p = prepare_case(small_case(), 0);
  // Head [1,4]x[2,5]x[1,6] joined with the label at (5,6,7): [1,5]x[2,6]x[1,7].
  CHECK(p.info.start == Size3{1, 2, 1});
  CHECK(p.info.size == Size3{5, 5, 7});
  CHECK(p.info.original == Size3{6, 7, 8});
  const PreparedCase wide = prepare_case(small_case(), 2);
  CHECK(wide.info.start == Size3{0, 0, 0});
  CHECK(wide.info.size == Size3{6, 7, 8});

  // Every voxel of the original comes back from the stored one (undo the crop), with the
  // values z-scored exactly as the uncropped volume.
  Tensor<float> stored(p.arrays->image.shape);
  std::copy(p.arrays->image.data, p.arrays->image.data + stored.numel(), stored.data());
  const Tensor<float> back = undo_crop_or_pad(stored, p.info.crop());
  REQUIRE(back.shape() == reference.shape());
  for (index_t i = 0; i < back.numel(); ++i) REQUIRE(back[i] == reference[i]);
  Tensor<std::uint8_t> stored_labels(p.arrays->labels.shape);
  std::copy(p.arrays->labels.data, p.arrays->labels.data + stored_labels.numel(),
            stored_labels.data());
  const Tensor<std::uint8_t> labels_back = undo_crop_or_pad(stored_labels, p.info.crop());
  for (index_t i = 0; i < labels.numel(); ++i) REQUIRE(labels_back[i] == labels[i]);

  // Foreground lists: WT = 4 voxels, TC = {1, 4} = 2, ET = {4} = 1, as stored-grid indices.
  CHECK(p.info.foreground == std::array<std::int64_t, 3>{4, 2, 1});
  for (std::size_t r = 0; r < 3; ++r) {
    for (std::size_t k = 0; k < p.arrays->foreground_count[r]; ++k) {
      const std::uint8_t v = p.arrays->labels.data[p.arrays->foreground[r][k]];
      CHECK(v != 0);
      if (r == 1) CHECK((v == 1 || v == 4));
      if (r == 2) CHECK(v == 4);
    }
  }
  CHECK(p.info.checksum == case_checksum(*p.arrays));

  LoadedCase empty = small_case();
  std::fill(empty.image.data(), empty.image.data() + empty.image.numel(), 0.0f);
  empty.labels.reset();
  CHECK_THROWS_WITH(prepare_case(std::move(empty)), Catch::Contains("case_a") &&
                                                        Catch::Contains("every voxel"));
}

TEST_CASE("case files: written, mapped back bit for bit, damage named", "[case_store]") {
  const revox_test::TempDir scratch("revox_test_case_store_files");
  PreparedCase p = prepare_case(small_case(), 1, "/somewhere/case_a");
  p.info.sources = {{"/somewhere/case_a/t1.nii.gz", 123, 456}};
  const fs::path file = scratch.path() / "case_a.safetensors";
  write_case_file(file, p.info, *p.arrays);
  CHECK(p.info.file == "case_a.safetensors");
  CHECK(p.info.bytes == fs::file_size(file));

  const MappedCase m = map_case_file(file, /*verify=*/true);
  CHECK(m.info.id == "case_a");
  CHECK(m.info.folder == "/somewhere/case_a");
  CHECK(m.info.start == p.info.start);
  CHECK(m.info.size == p.info.size);
  CHECK(m.info.geometry.spacing == p.info.geometry.spacing);
  CHECK(m.info.sources == p.info.sources);
  CHECK(m.info.checksum == p.info.checksum);
  CHECK(m.info.bytes == p.info.bytes);
  CHECK(m.arrays->bytes == p.info.bytes);
  REQUIRE(m.arrays->image.shape == p.arrays->image.shape);
  for (index_t i = 0; i < p.arrays->image.numel(); ++i) {
    REQUIRE(m.arrays->image.data[i] == p.arrays->image.data[i]);
  }
  for (index_t i = 0; i < p.arrays->labels.numel(); ++i) {
    REQUIRE(m.arrays->labels.data[i] == p.arrays->labels.data[i]);
  }
  for (std::size_t r = 0; r < 3; ++r) {
    REQUIRE(m.arrays->foreground_count[r] == p.arrays->foreground_count[r]);
    for (std::size_t k = 0; k < p.arrays->foreground_count[r]; ++k) {
      REQUIRE(m.arrays->foreground[r][k] == p.arrays->foreground[r][k]);
    }
  }
  // Aligned views straight into the mapping.
  CHECK(reinterpret_cast<std::uintptr_t>(m.arrays->image.data) % alignof(float) == 0);

  // A flipped byte in the image: found by verify, named.
  const fs::path flipped = scratch.path() / "flipped.safetensors";
  fs::copy_file(file, flipped);
  {
    std::fstream f(flipped, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-40, std::ios::end);
    char byte = 0;
    f.read(&byte, 1);
    byte = static_cast<char>(byte ^ 0x5a);
    f.seekp(-40, std::ios::end);
    f.write(&byte, 1);
  }
  CHECK_NOTHROW(map_case_file(flipped, /*verify=*/false));
  CHECK_THROWS_WITH(map_case_file(flipped, /*verify=*/true),
                    Catch::Contains("flipped.safetensors") && Catch::Contains("checksum"));
  // Truncated.
  const fs::path cut = scratch.path() / "cut.safetensors";
  fs::copy_file(file, cut);
  fs::resize_file(cut, fs::file_size(cut) - 100);
  CHECK_THROWS_WITH(map_case_file(cut), Catch::Contains("cut.safetensors"));
  // Not a case: a safetensors file without the metadata.
  const fs::path other = scratch.path() / "other.safetensors";
  io::write_safetensors(other, {{"x", io::SafeTensor{io::Dtype::F32, {1}, {0, 0, 0, 0}}}});
  CHECK_THROWS_WITH(map_case_file(other), Catch::Contains("not a preprocessed case"));
}

TEST_CASE("preprocess_dataset: index, resumes, redoes damaged and changed cases, reports "
          "failures", "[case_store]") {
  const revox_test::TempDir scratch("revox_test_case_store_dataset");
  const fs::path raw = scratch.path() / "raw", out = scratch.path() / "pre";
  PhantomSize size;
  size.width = 20;
  size.height = 18;
  size.depth = 12;
  write_phantom_dataset(raw, 5, size);

  PreprocessOptions options;
  options.threads = 3;
  std::vector<std::string> events;
  std::mutex mutex;
  auto record = [&](const PreprocessEvent& e) {
    std::lock_guard<std::mutex> lock(mutex);
    events.push_back(e.id + (e.kind == PreprocessEvent::Kind::written   ? " written"
                             : e.kind == PreprocessEvent::Kind::skipped ? " skipped"
                                                                        : " failed"));
  };
  const PreprocessSummary first = preprocess_dataset(raw, out, options, record);
  CHECK(first.written == 5);
  CHECK(first.skipped == 0);
  const CaseIndex index = read_case_index(out);
  REQUIRE(index.cases.size() == 5);
  CHECK(index.failed.empty());
  CHECK_NOTHROW(check_case_files(index));
  CHECK(check_sources(index).empty());
  // Same as one thread, case for case and byte for byte (the order is the discovery order).
  const fs::path single = scratch.path() / "single";
  PreprocessOptions one = options;
  one.threads = 1;
  preprocess_dataset(raw, single, one);
  for (const auto& c : index.cases) {
    std::ifstream a(out / "cases" / c.file, std::ios::binary), b(single / "cases" / c.file,
                                                                   std::ios::binary);
    const std::string sa((std::istreambuf_iterator<char>(a)), {}),
        sb((std::istreambuf_iterator<char>(b)), {});
    CHECK(sa == sb);
  }
  for (std::size_t i = 1; i < index.cases.size(); ++i) {
    CHECK(index.cases[i - 1].id < index.cases[i].id);
  }

  // A rerun skips everything; a damaged file (truncated) and a changed source are redone.
  events.clear();
  const auto& victim = index.cases[1];
  fs::resize_file(out / "cases" / victim.file, 64);
  const auto& changed = index.cases[3];
  // A source file touched since (same size, new modification time) marks its case stale.
  fs::last_write_time(changed.sources[0].path,
                      fs::last_write_time(changed.sources[0].path) + std::chrono::seconds(5));
  CaseIndex stale = index;
  stale.folder = out;
  {
    const auto changes = check_sources(stale);
    REQUIRE(changes.size() == 1);
    CHECK(changes[0].id == changed.id);
    CHECK_FALSE(changes[0].missing);
  }
  CHECK_THROWS_WITH(check_case_files(stale), Catch::Contains(victim.file) &&
                                                 Catch::Contains("bytes"));
  const PreprocessSummary second = preprocess_dataset(raw, out, options, record);
  CHECK(second.written == 2);
  CHECK(second.skipped == 3);
  const std::set<std::string> redone(events.begin(), events.end());
  CHECK(redone.count(victim.id + " written") == 1);
  CHECK(redone.count(changed.id + " written") == 1);
  CHECK_NOTHROW(check_case_files(read_case_index(out)));

  // A broken case fails alone (named, with the file), the rest is indexed; --strict stops.
  const fs::path broken_flair = raw / index.cases[2].id / (index.cases[2].id + "_flair.nii.gz");
  fs::resize_file(broken_flair, 100);
  const PreprocessSummary third = preprocess_dataset(raw, out, options);
  CHECK(third.failed == 1);
  const CaseIndex partial = read_case_index(out);
  CHECK(partial.cases.size() == 4);
  REQUIRE(partial.failed.size() == 1);
  CHECK(partial.failed[0].id == index.cases[2].id);
  CHECK_THAT(partial.failed[0].error, Catch::Contains("_flair.nii.gz"));
  PreprocessOptions strict = options;
  strict.strict = true;
  CHECK_THROWS_WITH(preprocess_dataset(raw, out, strict), Catch::Contains("--strict") &&
                                                              Catch::Contains("_flair.nii.gz"));
  // Missing index: named, with the command that writes it.
  fs::remove(out / kCaseIndexName);
  CHECK_THROWS_WITH(read_case_index(out), Catch::Contains("index.json") &&
                                              Catch::Contains("revox-brats preprocess"));
  { std::ofstream(out / kCaseIndexName) << "{\"format\": 3"; }
  CHECK_THROWS_WITH(read_case_index(out), Catch::Contains("damaged"));
  CHECK_THROWS_WITH(preprocess_dataset(scratch.path() / "nothing", scratch.path() / "x", options),
                    Catch::Contains("nothing"));
}

TEST_CASE("CaseCache: bounded by its limit, least recently used out, cases in use stay valid",
          "[case_store][loader]") {
  std::atomic<int> opened{0}, alive{0};
  struct Counted : CaseArrays {
    std::atomic<int>* alive;
    std::vector<float> storage;
    Counted(std::atomic<int>* a, std::size_t n, float value) : alive(a), storage(n, value) {
      ++*alive;
      image = TensorView<const float>{storage.data(), Shape5{1, 1, 1, 1, static_cast<index_t>(n)}};
      bytes = n * sizeof(float);
    }
    ~Counted() override { --*alive; }
  };
  CaseCache cache(
      [&](std::size_t i) -> std::shared_ptr<const CaseArrays> {
        ++opened;
        return std::make_shared<Counted>(&alive, 250, static_cast<float>(i));  // 1000 bytes
      },
      2500);
  {
    auto a = cache.get(0);
    cache.get(1);
    cache.get(0);  // hit: 0 is now the most recent
    CHECK(cache.hits() == 1);
    cache.get(2);  // 3000 > 2500: 1 (least recent) goes
    CHECK(cache.evictions() == 1);
    CHECK(cache.cached_bytes() == 2000);
    cache.get(1);  // reopened
    CHECK(opened == 4);
    CHECK(cache.peak_cached_bytes() <= 2500 + 1000);
    cache.clear();
    CHECK(cache.cached_bytes() == 0);
    // `a` was dropped by the cache but is still held here: valid, and counted live.
    CHECK(a->image.data[0] == 0.0f);
    CHECK(cache.live_bytes() == 1000);
    CHECK(alive == 1);
  }
  CHECK(cache.live_bytes() == 0);
  CHECK(alive == 0);

  // Under threads: the cache never holds more than its limit plus the case just opened,
  // and what is alive never exceeds that plus the cases the threads hold.
  // (Catch's assertions are not thread-safe: the threads count wrong cases, checked after.)
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Rng rng(static_cast<std::uint64_t>(t));
      for (int k = 0; k < 500; ++k) {
        const auto i = static_cast<std::size_t>(rng.below(20));
        const auto c = cache.get(i);
        if (c->image.data[0] != static_cast<float>(i)) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(wrong == 0);
  CHECK(cache.peak_cached_bytes() <= 2500 + 1000);
  CHECK(cache.peak_live_bytes() <= 2500 + 1000 + 4 * 1000);
  CHECK(cache.cached_bytes() <= 2500);
  CHECK(cache.evictions() > 0);
}

TEST_CASE("BackgroundLoader: the same items in order for 0, 1 and 3 workers, errors reach "
          "the consumer at their item", "[loader]") {
  auto make = [](std::size_t i) {
    Rng rng(1000 + i);
    std::vector<double> v(64);
    for (auto& x : v) x = rng.normal();
    return v;
  };
  std::vector<std::vector<double>> expected;
  for (std::size_t i = 0; i < 40; ++i) expected.push_back(make(i));
  for (int workers : {0, 1, 3}) {
    for (std::size_t depth : {std::size_t{1}, std::size_t{4}}) {
      INFO("workers " << workers << ", depth " << depth);
      BackgroundLoader<std::vector<double>> loader(40, make, workers, depth);
      for (std::size_t i = 0; i < 40; ++i) REQUIRE(loader.next() == expected[i]);
      CHECK_THROWS_WITH(loader.next(), Catch::Contains("all 40 items"));
      CHECK(loader.wait_seconds() >= 0.0);
    }
  }
  // Never more than `depth` items ahead.
  std::atomic<std::size_t> made{0};
  {
    BackgroundLoader<int> loader(
        100, [&](std::size_t i) { ++made; return static_cast<int>(i); }, 3, 2);
    CHECK(loader.next() == 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(made <= 3);  // item 0 and at most 2 ahead
  }
  // An exception thrown for item 3 is rethrown by the 4th next(), with its message.
  for (int workers : {0, 2}) {
    BackgroundLoader<int> loader(
        6,
        [](std::size_t i) {
          if (i == 3) throw Error("case 3 is broken");
          return static_cast<int>(i);
        },
        workers, 2);
    for (int i = 0; i < 3; ++i) CHECK(loader.next() == i);
    CHECK_THROWS_WITH(loader.next(), Catch::Contains("case 3 is broken"));
  }
  // Destroyed early: the workers stop.
  { BackgroundLoader<int> loader(1000, [](std::size_t i) { return static_cast<int>(i); }, 2, 8); }
}
