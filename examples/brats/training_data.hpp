// revox-brats training data: the cases `train` samples from, and how a training sample is
// cut from a case.
//
// --data is either a preprocessed dataset (a folder with index.json, written by
// `revox-brats preprocess`; revox/data/case_store.hpp) or a raw BraTS folder:
//   preprocessed  the index is read and every case file stat-ed (no case data is read), so
//                 the run starts in seconds whatever the number of cases; a case is mapped
//                 when a sample or a validation first needs it and kept in a CaseCache
//                 bounded by `cache_mb` (least recently used cases are unmapped), so the
//                 memory the data holds does not grow with the number of cases. Under
//                 mpirun every process maps only the cases it samples or validates.
//   raw           every case is read and prepared in memory by the same prepare_case as
//                 `preprocess` (crop to the head, z-score, foreground lists) on `threads`
//                 threads, so training from a raw folder and from its preprocessed copy
//                 gives the same weights. A raw set too large for memory is refused with
//                 the commands that preprocess it.
//
// A sample (make_sample) is a window of patch_size in the stored (cropped) grid: with
// probability tumor_probability centred on a foreground voxel (foreground "wt": any tumour
// voxel; "regions": first one of the regions WT, TC, ET present in the case, chosen
// uniformly, then one of its voxels, as nnU-Net samples classes), else uniform; or the
// whole volume padded to a multiple of 2^(levels-1) (sampling "full"). Then the
// augmentation and the region targets. Everything is drawn from the sample's own Rng, so a
// sample depends only on its index (the background loader's workers give the same samples
// in any number).
#pragma once

#include <nifti2_io.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "inference.hpp"
#include "revox/core/random.hpp"
#include "revox/data/augment.hpp"
#include "revox/data/brats.hpp"
#include "revox/data/case_store.hpp"
#include "revox/data/loader.hpp"
#include "revox/data/preprocess.hpp"
#include "revox/io/nifti.hpp"
#include "run_config.hpp"

namespace revox::brats {

namespace fs = std::filesystem;

struct TrainingDataOptions {
  int threads = 1;                 // raw data: cases prepared at once
  io::NanPolicy nan_policy = io::NanPolicy::error;
  std::uint64_t cache_bytes = 1ull << 30;  // preprocessed data: mapped cases kept open
  // raw data: refuse when the prepared cases would need more than this (0: half of the
  // memory available now)
  std::uint64_t raw_limit_bytes = 0;
};

class TrainingData {
 public:
  std::vector<data::CaseInfo> cases;  // in discovery (case id) order
  bool preprocessed = false;
  fs::path folder;                    // --data

  std::shared_ptr<const data::CaseArrays> get(std::size_t i) const {
    if (cache_) return cache_->get(i);
    return owned_.at(i);
  }
  // The cache of a preprocessed dataset (nullptr for raw data held in memory).
  const data::CaseCache* cache() const { return cache_.get(); }
  std::uint64_t memory_bytes() const {
    std::uint64_t b = 0;
    for (const auto& a : owned_) b += a->bytes;
    return b;
  }

  std::vector<std::shared_ptr<const data::CaseArrays>> owned_;
  std::shared_ptr<data::CaseCache> cache_;
};

namespace detail {

// The float32 bytes of one case's four modalities, from its t1 header (no voxel is read).
inline std::uint64_t raw_case_bytes(const data::BratsCase& c) {
  std::unique_ptr<nifti_image, void (*)(nifti_image*)> image(
      nifti_image_read(c.modalities[0].c_str(), 0), [](nifti_image* p) { nifti_image_free(p); });
  if (!image) return 0;  // the full read reports the problem
  return static_cast<std::uint64_t>(image->nvox) * (4 * sizeof(float) + 1);
}

inline std::string gigabytes(std::uint64_t bytes) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.1f GB", static_cast<double>(bytes) / 1e9);
  return buffer;
}

}  // namespace detail

// Opens --data (see the top of this file). `say` receives progress lines.
inline TrainingData open_training_data(const fs::path& folder, const TrainingDataOptions& options,
                                       const std::function<void(const std::string&)>& say) {
  TrainingData out;
  out.folder = folder;
  if (data::is_preprocessed_folder(folder)) {
    out.preprocessed = true;
    data::CaseIndex index = data::read_case_index(folder);
    data::check_case_files(index);
    for (const auto& f : index.failed) {
      say("train: note: case " + f.id + " failed preprocessing and is left out: " + f.error);
    }
    const auto changes = data::check_sources(index);
    std::size_t missing = 0;
    for (const auto& change : changes) {
      if (change.missing) {
        ++missing;
        continue;
      }
      throw Error("train: the source file '" + change.path + "' of case " + change.id +
                  " changed since '" + folder.string() + "' was preprocessed; rerun `revox-brats "
                  "preprocess --data " + index.source + " --out " + folder.string() +
                  "` (it redoes only the changed cases)");
    }
    if (missing > 0) {
      say("train: note: " + std::to_string(missing) + " source file(s) of the preprocessed cases "
          "no longer exist (e.g. '" + changes.front().path + "'); training uses the preprocessed "
          "copies");
    }
    out.cases = index.cases;
    auto shared_index = std::make_shared<data::CaseIndex>(std::move(index));
    out.cache_ = std::make_shared<data::CaseCache>(
        [shared_index](std::size_t i) -> std::shared_ptr<const data::CaseArrays> {
          const auto& info = shared_index->cases.at(i);
          data::MappedCase mapped = data::map_case_file(shared_index->case_path(info));
          REVOX_CHECK(mapped.info.id == info.id && mapped.info.checksum == info.checksum,
                      "preprocessed case '", shared_index->case_path(info).string(),
                      "' is not the case the index lists (", info.id, "); rerun `revox-brats "
                      "preprocess`");
          return mapped.arrays;
        },
        options.cache_bytes);
    return out;
  }

  data::DiscoverOptions discover;
  discover.require_segmentation = true;
  const auto cases = data::discover_brats_cases(folder, discover);
  if (cases.empty()) return out;
  const std::uint64_t estimate = detail::raw_case_bytes(cases.front()) * cases.size();
  const std::uint64_t limit =
      options.raw_limit_bytes > 0 ? options.raw_limit_bytes : io::available_memory_bytes() / 2;
  REVOX_CHECK(estimate <= limit, "train: --data '", folder.string(), "' holds ", cases.size(),
              " raw cases, about ", detail::gigabytes(estimate), " in memory once loaded, more "
              "than the ", detail::gigabytes(limit), " allowed for raw data (half the memory "
              "available now). Preprocess it once and train from the result, which keeps only "
              "a bounded cache in memory:\n  revox-brats preprocess --data ", folder.string(),
              " --out PREPROCESSED --threads N\n  revox-brats train --data PREPROCESSED ...");
  say("train: preparing " + std::to_string(cases.size()) + " cases from " + folder.string() +
      " in memory (" + std::to_string(options.threads) + " thread(s); `revox-brats preprocess` "
      "does this once for large sets)...");
  const auto start = std::chrono::steady_clock::now();
  out.cases.resize(cases.size());
  out.owned_.resize(cases.size());
  std::vector<std::string> notes(cases.size());
  std::atomic<std::size_t> next{0};
  std::mutex mutex;
  std::exception_ptr failure;
  std::size_t failed_at = cases.size();
  auto worker = [&] {
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
    for (std::size_t i; (i = next++) < cases.size();) {
      try {
        data::LoadOptions load;
        load.nan_policy = options.nan_policy;
        data::LoadedCase loaded = data::load_brats_case(cases[i], load);
        for (const auto& z : loaded.zeroed) notes[i] += data::describe_zeroed(loaded.id, z) + "\n";
        std::error_code ec;
        const auto where = fs::absolute(cases[i].folder, ec).lexically_normal().string();
        data::PreparedCase prepared = data::prepare_case(std::move(loaded), 2, where);
        prepared.info.nan_policy = io::to_string(options.nan_policy);
        out.cases[i] = prepared.info;
        out.owned_[i] = prepared.arrays;
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        // The first failing case in discovery order, whatever the threads' timing.
        if (i < failed_at) {
          failed_at = i;
          failure = std::current_exception();
        }
      }
    }
  };
  const int threads = std::max(1, std::min<int>(options.threads, static_cast<int>(cases.size())));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
  for (const auto& n : notes) {
    std::size_t begin = 0;
    for (std::size_t end; (end = n.find('\n', begin)) != std::string::npos; begin = end + 1) {
      say("train: " + n.substr(begin, end - begin));
    }
  }
  char line[160];
  std::snprintf(line, sizeof line, "train: prepared %zu cases in %.1f s (%.1f MB in memory)",
                cases.size(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                static_cast<double>(out.memory_bytes()) / 1e6);
  say(line);
  return out;
}

// A window of `patch` size centred on flat voxel `center`, clamped into the volume (axes
// where the volume is smaller than the patch are padded, centred).
inline data::CropPad window_around(const data::Size3& source, const data::Size3& patch,
                                   index_t center) {
  data::CropPad plan = data::centered_crop_pad(source, patch);
  const index_t c[3] = {center / (source[1] * source[2]), (center / source[2]) % source[1],
                        center % source[2]};
  for (int a = 0; a < 3; ++a) {
    if (source[a] > patch[a]) {
      const index_t start = std::clamp<index_t>(c[a] - patch[a] / 2, 0, source[a] - patch[a]);
      plan.offset[a] = -start;
    }
  }
  return plan;
}

inline data::Size3 round_up(const data::Size3& s, index_t divisor) {
  return {round_up(s[0], divisor), round_up(s[1], divisor), round_up(s[2], divisor)};
}

struct Sample {
  Tensor<float> image;    // (1, 4, d, h, w)
  Tensor<float> targets;  // (1, 3, d, h, w): WT, TC, ET
  std::string id;
};

// One training sample of a case (see the top of this file); `rng` is the sample's own.
inline Sample make_sample(const RunConfig& config, const data::CaseInfo& info,
                          const data::CaseArrays& arrays, Rng& rng) {
  REVOX_CHECK(arrays.labels.data != nullptr, "train: case ", info.id, " has no segmentation");
  const data::Size3 source = data::spatial_size(arrays.image.shape);
  data::CropPad window;
  if (config.sampling == "full") {
    window = data::centered_crop_pad(source, round_up(source, config.model.size_divisor()));
  } else {
    // The region whose voxel centres the patch: "wt" the whole tumour, "regions" one of
    // WT, TC, ET present, chosen uniformly; none (a uniform window) otherwise.
    std::optional<std::size_t> region;
    if (config.foreground == "wt") {
      if (arrays.foreground_count[0] > 0 && rng.uniform01() < config.tumor_probability) {
        region = 0;
      }
    } else {  // "regions"
      std::size_t present[3];
      std::size_t n = 0;
      for (std::size_t r = 0; r < 3; ++r) {
        if (arrays.foreground_count[r] > 0) present[n++] = r;
      }
      if (n > 0 && rng.uniform01() < config.tumor_probability) region = present[rng.below(n)];
    }
    if (region) {
      const std::size_t r = *region;
      const index_t voxel =
          arrays.foreground[r][static_cast<std::size_t>(rng.below(arrays.foreground_count[r]))];
      window = window_around(source, config.patch_size, voxel);
    } else {
      window = data::random_crop_window(source, config.patch_size, rng);
    }
  }
  Sample sample;
  sample.id = info.id;
  sample.image = data::crop_or_pad(arrays.image, window);
  Tensor<std::uint8_t> labels = data::crop_or_pad(arrays.labels, window);
  if (config.augment_enabled) {
    // With augment.probability < 1 a sample draws whether it is fully augmented or only
    // flipped (no draw at 1, so such runs keep their random streams).
    data::AugmentOptions options = config.augment;
    if (config.augment_probability < 1.0 && !(rng.uniform01() < config.augment_probability)) {
      options.rotation_degrees = options.scale = options.intensity = 0.0;
      options.intensity_shift = options.elastic_sigma = 0.0;
    }
    const auto drawn = data::draw_augmentation(options, rng, sample.image.shape());
    data::augment(sample.image, &labels, drawn);
  }
  sample.targets = data::region_targets(labels, info.convention, info.id);
  return sample;
}

// A case's image (stored grid) and its labels in the ORIGINAL grid, for validation.
inline Tensor<float> case_image(const data::CaseArrays& arrays) {
  Tensor<float> image(arrays.image.shape);
  std::copy(arrays.image.data, arrays.image.data + arrays.image.numel(), image.data());
  return image;
}

inline Tensor<std::uint8_t> original_labels(const data::CaseInfo& info,
                                            const data::CaseArrays& arrays) {
  Tensor<std::uint8_t> stored(arrays.labels.shape);
  std::copy(arrays.labels.data, arrays.labels.data + arrays.labels.numel(), stored.data());
  return data::undo_crop_or_pad(stored, info.crop());
}

}  // namespace revox::brats
