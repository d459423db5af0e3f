// The BraTS data pipeline for one case, stage by stage and end to end: load (4 modalities +
// seg, .nii.gz, 240 x 240 x 155), z-score over the brain, centered crop/pad to the paper's
// 256 x 256 x 160, and one augmentation pass (rotation, scaling, flips, intensity, elastic)
// of image and labels. Then the preprocessed path (revox/data/case_store.hpp): prepare a
// case (crop to the head, z-score, foreground lists), write its file, map it, and cut a
// 128^3 training patch from the mapping with the file in the page cache (warm) and evicted
// from it first (cold: posix_fadvise DONTNEED, so the patch's pages come from the disk).
// Data preparation must keep up with a training step; docs/results.md puts the two side by
// side. Threads: OMP_NUM_THREADS.
//   OMP_NUM_THREADS=2 build/benchmarks/bench_data_pipeline
//
// Setup (untimed, once): write_phantom_dataset writes one synthetic case in the exact BraTS
// 2020 layout to a fresh folder under the system temp dir, removed at exit. Stages after
// the first work on a copy of the previous stage's output, made while the timer is paused.
#include <benchmark/benchmark.h>

#include <fcntl.h>
#include <omp.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

#include "revox/core/random.hpp"
#include "revox/core/tensor.hpp"
#include "revox/data/augment.hpp"
#include "revox/data/brats.hpp"
#include "revox/data/case_store.hpp"
#include "revox/data/phantom.hpp"
#include "revox/data/preprocess.hpp"
#include "revox/io/nifti.hpp"

namespace {

namespace fs = std::filesystem;
using revox::Tensor;

constexpr std::uint64_t kAugmentSeed = 7;

// One phantom case on disk for the whole run.
class PhantomOnDisk {
 public:
  PhantomOnDisk()
      : root_(fs::temp_directory_path() /
              ("revox_bench_data_pipeline_" + std::to_string(static_cast<long>(::getpid())))) {
    fs::remove_all(root_);
    revox::data::write_phantom_dataset(root_, 1);
    const auto cases = revox::data::discover_brats_cases(root_);
    REVOX_CHECK(cases.size() == 1, "bench_data_pipeline: expected one phantom case, found ",
                cases.size());
    case_ = cases.front();
  }
  PhantomOnDisk(const PhantomOnDisk&) = delete;
  PhantomOnDisk& operator=(const PhantomOnDisk&) = delete;
  ~PhantomOnDisk() {
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }
  const revox::data::BratsCase& brats_case() const { return case_; }

 private:
  fs::path root_;
  revox::data::BratsCase case_;
};

const revox::data::BratsCase& phantom_case() {
  static const PhantomOnDisk phantom;
  return phantom.brats_case();
}

revox::data::LoadedCase load() {
  revox::data::LoadOptions options;
  options.expected_size = revox::data::brats_volume_size;
  return revox::data::load_brats_case(phantom_case(), options);
}

struct Prepared {
  Tensor<float> image;            // (1, 4, D, H, W)
  Tensor<std::uint8_t> labels;    // (1, 1, D, H, W)
};

Prepared crop_pad(const Tensor<float>& image, const Tensor<std::uint8_t>& labels) {
  revox::data::CropPad plan;
  Prepared out;
  out.image = revox::data::crop_or_pad(image, revox::data::paper_volume_size, plan);
  out.labels = revox::data::crop_or_pad(labels, plan);
  return out;
}

void augment(Prepared& p) {
  revox::Rng rng(kAugmentSeed);  // the same sample every iteration: comparable timings
  const auto sample = revox::data::draw_augmentation({}, rng, p.image.shape());
  revox::data::augment(p.image, &p.labels, sample);
}

void set_counters(benchmark::State& state) {
  state.counters["threads"] = omp_get_max_threads();
}

void BM_Load(benchmark::State& state) {
  phantom_case();
  for (auto _ : state) {
    auto loaded = load();
    benchmark::DoNotOptimize(loaded.image.data());
  }
  set_counters(state);
}
BENCHMARK(BM_Load)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ZScore(benchmark::State& state) {
  const auto loaded = load();
  for (auto _ : state) {
    state.PauseTiming();
    auto image = loaded.image.clone();
    state.ResumeTiming();
    revox::data::zscore_nonzero(image, loaded.id);
    benchmark::DoNotOptimize(image.data());
  }
  set_counters(state);
}
BENCHMARK(BM_ZScore)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_CropPad(benchmark::State& state) {
  auto loaded = load();
  revox::data::zscore_nonzero(loaded.image, loaded.id);
  for (auto _ : state) {
    auto prepared = crop_pad(loaded.image, *loaded.labels);
    benchmark::DoNotOptimize(prepared.image.data());
  }
  set_counters(state);
}
BENCHMARK(BM_CropPad)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Augment(benchmark::State& state) {
  auto loaded = load();
  revox::data::zscore_nonzero(loaded.image, loaded.id);
  const auto prepared = crop_pad(loaded.image, *loaded.labels);
  for (auto _ : state) {
    state.PauseTiming();
    Prepared p{prepared.image.clone(), prepared.labels.clone()};
    state.ResumeTiming();
    augment(p);
    benchmark::DoNotOptimize(p.image.data());
  }
  set_counters(state);
}
BENCHMARK(BM_Augment)->Unit(benchmark::kMillisecond)->UseRealTime();

// Everything a training step waits for: load + z-score + crop/pad + augment.
void BM_FullPipeline(benchmark::State& state) {
  phantom_case();
  for (auto _ : state) {
    auto loaded = load();
    revox::data::zscore_nonzero(loaded.image, loaded.id);
    auto prepared = crop_pad(loaded.image, *loaded.labels);
    augment(prepared);
    benchmark::DoNotOptimize(prepared.image.data());
  }
  set_counters(state);
}
BENCHMARK(BM_FullPipeline)->Unit(benchmark::kMillisecond)->UseRealTime();

// Writing a prediction (uint8 labels, .nii.gz, atomic) as `predict` does after each case.
void BM_WritePredictionLabels(benchmark::State& state) {
  const auto loaded = load();
  const fs::path path = fs::temp_directory_path() /
                        ("revox_bench_prediction_" + std::to_string(static_cast<long>(::getpid())) +
                         ".nii.gz");
  for (auto _ : state) revox::io::write_nifti_labels(path, *loaded.labels, loaded.geometry);
  fs::remove(path);
  set_counters(state);
}
BENCHMARK(BM_WritePredictionLabels)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- the preprocessed path ---------------------------------------------------------

const fs::path& case_file() {
  static const fs::path path = [] {
    const fs::path p = fs::temp_directory_path() /
                       ("revox_bench_case_" + std::to_string(static_cast<long>(::getpid())) +
                        ".safetensors");
    auto prepared = revox::data::prepare_case(load());
    revox::data::write_case_file(p, prepared.info, *prepared.arrays);
    std::atexit([] {
      std::error_code ignored;
      fs::remove(fs::temp_directory_path() /
                     ("revox_bench_case_" + std::to_string(static_cast<long>(::getpid())) +
                      ".safetensors"),
                 ignored);
    });
    return p;
  }();
  return path;
}

void BM_PrepareCase(benchmark::State& state) {
  const auto loaded = load();
  for (auto _ : state) {
    state.PauseTiming();
    revox::data::LoadedCase copy;
    copy.id = loaded.id;
    copy.image = loaded.image.clone();
    copy.labels = loaded.labels->clone();
    copy.geometry = loaded.geometry;
    state.ResumeTiming();
    auto prepared = revox::data::prepare_case(std::move(copy));
    benchmark::DoNotOptimize(prepared.arrays.get());
  }
  set_counters(state);
}
BENCHMARK(BM_PrepareCase)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_WriteCaseFile(benchmark::State& state) {
  auto prepared = revox::data::prepare_case(load());
  const fs::path path = case_file().string() + ".write";
  for (auto _ : state) {
    revox::data::write_case_file(path, prepared.info, *prepared.arrays);
  }
  state.counters["MB"] = static_cast<double>(prepared.info.bytes) / 1e6;
  fs::remove(path);
  set_counters(state);
}
BENCHMARK(BM_WriteCaseFile)->Unit(benchmark::kMillisecond)->UseRealTime();

void drop_from_page_cache(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

// Map (header only) and cut one 128^3 patch of image and labels, centred.
void map_and_cut(benchmark::State& state, bool cold) {
  const fs::path& path = case_file();
  for (auto _ : state) {
    if (cold) {
      state.PauseTiming();
      drop_from_page_cache(path);
      state.ResumeTiming();
    }
    const auto mapped = revox::data::map_case_file(path);
    const auto window = revox::data::centered_crop_pad(
        revox::data::spatial_size(mapped.arrays->image.shape), {128, 128, 128});
    auto image = revox::data::crop_or_pad(mapped.arrays->image, window);
    auto labels = revox::data::crop_or_pad(mapped.arrays->labels, window);
    benchmark::DoNotOptimize(image.data());
    benchmark::DoNotOptimize(labels.data());
  }
  state.counters["MB"] = static_cast<double>(fs::file_size(path)) / 1e6;
  set_counters(state);
}
void BM_MapCutPatch128Warm(benchmark::State& state) { map_and_cut(state, false); }
void BM_MapCutPatch128Cold(benchmark::State& state) { map_and_cut(state, true); }
BENCHMARK(BM_MapCutPatch128Warm)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_MapCutPatch128Cold)->Unit(benchmark::kMillisecond)->UseRealTime();

// Map and read every byte (checksum), cold: the speed of reading a whole case file.
void BM_MapVerifyCold(benchmark::State& state) {
  const fs::path& path = case_file();
  for (auto _ : state) {
    state.PauseTiming();
    drop_from_page_cache(path);
    state.ResumeTiming();
    const auto mapped = revox::data::map_case_file(path, /*verify=*/true);
    benchmark::DoNotOptimize(mapped.arrays.get());
  }
  state.counters["MB"] = static_cast<double>(fs::file_size(path)) / 1e6;
  set_counters(state);
}
BENCHMARK(BM_MapVerifyCold)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
