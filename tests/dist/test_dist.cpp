// The parts of revox/dist/communicator.hpp that need no MPI: the single-process backend, the
// scale kernel body, the launcher detection, checksums, the training helpers, and the
// trainer's batch_size (gradients of several samples per process summed, then averaged).
// The MPI backend runs under mpirun in mpi_check.cpp.
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "../../examples/brats/checkpoint.hpp"
#include "../../examples/brats/run_config.hpp"
#include "../../examples/brats/trainer.hpp"
#include "revox/core/init.hpp"
#include "revox/data/phantom.hpp"
#include "revox/dist/communicator.hpp"
#include "revox/ops/kernel_bodies/for_each.hpp"
#include "revox/optim/adam.hpp"

namespace fs = std::filesystem;
using namespace revox;

namespace {

// Sets environment variables for one scope and restores them afterwards.
class ScopedEnv {
 public:
  void set(const char* name, const char* value) {
    if (saved_.count(name) == 0) {
      const char* old = std::getenv(name);
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
    }
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    for (const auto& [name, value] : saved_) {
      if (value) {
        ::setenv(name.c_str(), value->c_str(), 1);
      } else {
        ::unsetenv(name.c_str());
      }
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

const char* kLauncherVars[] = {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_SIZE",
                               "PMI_RANK", "PMIX_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"};

Tensor<float> iota(index_t n, float step) {
  Tensor<float> t(Shape5{1, 1, 1, 1, n});
  for (index_t i = 0; i < n; ++i) t[i] = step * static_cast<float>(i + 1);
  return t;
}

struct ScratchDir {
  fs::path path;
  explicit ScratchDir(const std::string& name)
      : path(fs::temp_directory_path() /
             ("revox_test_dist_" + std::to_string(::getpid()) + "_" + name)) {
    fs::remove_all(path);
  }
  ~ScratchDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
};

}  // namespace

TEST_CASE("dist: the single-process communicator is rank 0 of 1 and only applies the scale",
          "[dist]") {
  dist::SingleProcess<Cpu> comm;
  CHECK(comm.rank() == 0);
  CHECK(comm.size() == 1);
  CHECK(comm.local_rank() == 0);
  CHECK(std::string(comm.backend()) == "single");

  Tensor<float> a = iota(70000, 0.5f);  // above the OpenMP threshold of the scale
  comm.all_reduce_sum(a.view(), 1.0f);
  for (index_t i = 0; i < a.numel(); ++i) REQUIRE(a[i] == 0.5f * static_cast<float>(i + 1));
  comm.all_reduce_sum(a.view(), 0.25f);
  for (index_t i = 0; i < a.numel(); ++i) REQUIRE(a[i] == 0.125f * static_cast<float>(i + 1));

  Tensor<double> d(Shape5{1, 1, 1, 1, 3});
  for (index_t i = 0; i < 3; ++i) d[i] = 3.0 * static_cast<double>(i);
  comm.all_reduce_sum(d.view(), 2.0);
  CHECK(d[2] == 12.0);
  comm.broadcast(d.view(), 0);
  CHECK(d[2] == 12.0);
  CHECK_THROWS_WITH(comm.broadcast(d.view(), 1), Catch::Contains("root 1 is not a rank"));

  double host[2] = {1.5, -2.0};
  comm.all_reduce_sum_host(host, 2);
  comm.all_reduce_max_host(host, 2);
  CHECK(host[0] == 1.5);
  CHECK(host[1] == -2.0);
  std::string text = "kept";
  dist::broadcast_string(comm, text);
  CHECK(text == "kept");
}

TEST_CASE("dist: the scale kernel body gives the CPU loop's result when emulated", "[dist]") {
  Tensor<float> a = iota(1000, 0.3f), b = iota(1000, 0.3f);
  dist::detail::scale_buffer(Cpu{}, a.view(), 1.0f / 3.0f);
  kernels::emulate_for_each(b.numel(), dist::ScaleBody<float>{b.data(), 1.0f / 3.0f});
  for (index_t i = 0; i < a.numel(); ++i) {
    REQUIRE(a[i] == b[i]);
    REQUIRE(a[i] == Approx(0.1 * static_cast<double>(i + 1)).epsilon(1e-6));
  }
}

TEST_CASE(
    "dist: average_gradients scales by 1 / (samples x processes), and the helpers on one process",
    "[dist]") {
  UNet<float> net(unet_preset("tiny"));
  Parameters<float> params(net);
  Rng rng(5);
  net.reset_parameters(rng);
  fill_uniform(params.grads(), rng, -1, 1);
  std::vector<float> before(params.grads().data, params.grads().data + params.size());
  dist::SingleProcess<Cpu> comm;
  dist::average_gradients(comm, params, 4);
  for (index_t i = 0; i < params.size(); ++i) {
    REQUIRE(params.grads()[i] == before[static_cast<std::size_t>(i)] * 0.25f);
  }
  CHECK_THROWS_WITH(dist::average_gradients(comm, params, 0),
                    Catch::Contains("samples_per_rank must be >= 1"));

  optim::Adam<float> adam(params);
  adam.step();
  adam.step();
  dist::broadcast_optimizer_state(comm, adam);
  CHECK(adam.steps() == 2);
  CHECK_NOTHROW(dist::check_replicas(comm, TensorView<const float>(params.values()), "weights"));

  // With one process run_or_abort lets the exception through (main reports it).
  CHECK_THROWS_WITH(dist::run_or_abort(comm, "test", [] { throw Error("boom"); }),
                    Catch::Contains("boom"));
}

TEST_CASE("dist: checksums tell buffers apart by a single bit", "[dist]") {
  std::vector<float> a(257, 1.0f), b = a;
  CHECK(dist::checksum(a.data(), a.size() * 4) == dist::checksum(b.data(), b.size() * 4));
  b[200] = std::nextafter(1.0f, 2.0f);
  CHECK(dist::checksum(a.data(), a.size() * 4) != dist::checksum(b.data(), b.size() * 4));
  CHECK(dist::checksum(std::string("ab")) != dist::checksum(std::string("ba")));
}

TEST_CASE(
    "dist: launcher detection, and a build without MPI refuses to be one of several processes",
    "[dist]") {
  ScopedEnv env;
  for (const char* name : kLauncherVars) env.set(name, nullptr);
  dist::LaunchInfo info = dist::launch_info();
  CHECK_FALSE(info.launched);
  CHECK(info.size == 1);
  CHECK(dist::single_process_communicator("prog")->size() == 1);

  env.set("OMPI_COMM_WORLD_SIZE", "2");
  env.set("OMPI_COMM_WORLD_RANK", "1");
  info = dist::launch_info();
  CHECK(info.launched);
  CHECK(info.size == 2);
  CHECK(info.rank == 1);
  CHECK_THROWS_WITH(dist::single_process_communicator("prog"),
                    Catch::Contains("prog: started by an MPI launcher as rank 1 of 2") &&
                        Catch::Contains("no MPI support"));

  // MPICH / Hydra; a launch of one process is fine without MPI.
  env.set("OMPI_COMM_WORLD_SIZE", nullptr);
  env.set("OMPI_COMM_WORLD_RANK", nullptr);
  env.set("PMI_SIZE", "1");
  env.set("PMI_RANK", "0");
  info = dist::launch_info();
  CHECK(info.launched);
  CHECK(info.size == 1);
  CHECK(dist::single_process_communicator("prog")->size() == 1);
  env.set("PMI_SIZE", "garbage");
  CHECK(dist::launch_info().size == 1);
}

TEST_CASE("trainer: batch_size sums several samples per step, and the steps per epoch follow",
          "[dist][brats]") {
  using namespace revox::brats;
  nlohmann::json bad = training_preset("tiny");
  apply_set(bad, "batch_size=0");
  CHECK_THROWS_WITH(parse_run_config(bad), Catch::Contains("'batch_size' must be an integer >= 1"));

  ScratchDir data("data"), one("batch1"), two("batch2");
  data::PhantomSize size;
  size.width = 24;
  size.height = 24;
  size.depth = 16;
  data::write_phantom_dataset(data.path, 4, size);
  nlohmann::json config = training_preset("tiny");
  apply_set(config, "epochs=1");
  apply_set(config, "holdout_count=1");
  apply_set(config, "augment.elastic_sigma=2");
  std::ostringstream sink;
  TrainOptions options;
  options.data = data.path;
  options.out = one.path;
  options.config = parse_run_config(config).json;
  options.threads = 1;
  options.quiet = true;
  const TrainResult a = run_training(options, sink);
  apply_set(config, "batch_size=2");
  options.out = two.path;
  options.config = parse_run_config(config).json;
  const TrainResult b = run_training(options, sink);

  // 3 training cases: 3 steps of 1 sample, or ceil(3 / 2) = 2 steps of 2 (4 visits).
  CHECK(read_checkpoint(one.path / "latest.safetensors").step == 3);
  const Checkpoint ck = read_checkpoint(two.path / "latest.safetensors");
  CHECK(ck.step == 2);
  CHECK(ck.file.meta("processes") == "1");
  CHECK(ck.config["batch_size"] == 2);
  // The visits of an epoch are the same samples; batch 2 trains on 4 of them.
  REQUIRE(a.history.size() == 1);
  REQUIRE(b.history.size() == 1);
  CHECK(std::isfinite(b.history[0].loss));
  CHECK(a.history[0].loss != b.history[0].loss);

  // A checkpoint written before batch_size existed resumes (the key takes its default, 1).
  {
    io::SafetensorsFile file = io::read_safetensors(one.path / "latest.safetensors");
    nlohmann::json old = nlohmann::json::parse(file.meta("config"));
    old.erase("batch_size");
    file.metadata["config"] = old.dump();
    file.metadata.erase("processes");
    io::write_safetensors(one.path / "latest.safetensors", file.tensors, file.metadata);
  }
  TrainOptions resume = options;
  resume.out = one.path;
  resume.config.reset();
  resume.resume = true;
  resume.epochs = 2;
  const TrainResult c = run_training(resume, sink);
  REQUIRE(c.history.size() == 2);
  CHECK(c.history[0].loss == a.history[0].loss);
  CHECK(read_checkpoint(one.path / "latest.safetensors").step == 6);
}
