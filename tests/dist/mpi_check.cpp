// tests/dist/mpi_check.cpp — the MPI communicator (revox/dist/mpi.hpp) under a real mpirun.
// Started by ctest through `mpirun -n 2` (tests/dist/CMakeLists.txt); every rank runs the
// same checks and prints "FAIL (rank r): ..." for each one that fails; the exit code is the
// number of failures (0: all passed).
//
//   mpi_check collectives N   the job must have N processes; checks every collective with
//                             rank-dependent values, check_replicas, and data-parallel
//                             training of the "tiny" UNet: N ranks x 1 sample per step give,
//                             after every step, the same weights (relative 1e-5) as one
//                             process that sums the gradients of the same N samples
//                             (SingleProcess), and identical weights on every rank (checksum).
//                             The ranks start from different weights on purpose: the broadcast
//                             of rank 0's weights must make them equal.
//   mpi_check throw           the last rank throws inside run_or_abort while the others wait
//                             in a collective: the job must end (MPI_Abort) with the message.
//   mpi_check die             the last rank exits abruptly (no MPI_Finalize) while the others
//                             wait in a collective: the launcher must end the job.
//   mpi_check time N [R]      (a measurement, not a test) rank 0 prints the median time of R
//                             (default 20) all-reduces of N floats with a scale, as
//                             average_gradients does, after 3 warm-up calls.
// The last two never pass on their own: tests/dist/mpi_failures.sh checks that they fail
// quickly, non-zero, and with the message.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "revox/core/init.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/random.hpp"
#include "revox/dist/communicator.hpp"
#include "revox/dist/mpi.hpp"
#include "revox/losses/dice.hpp"
#include "revox/models/unet.hpp"
#include "revox/ops/add.hpp"
#include "revox/optim/adam.hpp"

using namespace revox;

namespace {

int failures = 0;
int my_rank = 0;

void expect(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::cerr << "FAIL (rank " << my_rank << "): " << what << std::endl;
  }
}

std::string text_of(double x) {
  std::ostringstream out;
  out.precision(17);
  out << x;
  return out.str();
}

// Rank-dependent contents: element i of rank r.
template <class T>
T value_of(int rank, index_t i) {
  return static_cast<T>((rank + 1) * static_cast<int>(i % 7 + 1)) * T(0.25);
}

template <class T>
void check_all_reduce(dist::Communicator<Cpu>& comm, index_t n) {
  auto buffer = Tensor<T>(Shape5{1, 1, 1, 1, n});
  for (index_t i = 0; i < n; ++i) buffer[i] = value_of<T>(comm.rank(), i);
  comm.all_reduce_sum(buffer.view(), T(0.5));
  index_t wrong = 0;
  for (index_t i = 0; i < n; ++i) {
    T expected = 0;
    for (int r = 0; r < comm.size(); ++r) expected += value_of<T>(r, i);
    expected *= T(0.5);
    if (buffer[i] != expected) ++wrong;
  }
  expect(wrong == 0, "all_reduce_sum (" + std::string(sizeof(T) == 4 ? "float" : "double") +
                         ", " + std::to_string(n) + " elements, scale 0.5): " +
                         std::to_string(wrong) + " elements differ from the sum over ranks");

  // Broadcast from the last rank.
  const int root = comm.size() - 1;
  for (index_t i = 0; i < n; ++i) buffer[i] = static_cast<T>(1000 * comm.rank() + i);
  comm.broadcast(buffer.view(), root);
  wrong = 0;
  for (index_t i = 0; i < n; ++i) wrong += buffer[i] != static_cast<T>(1000 * root + i);
  expect(wrong == 0, "broadcast from rank " + std::to_string(root) + ": " +
                         std::to_string(wrong) + " elements differ");
}

void check_collectives(dist::Communicator<Cpu>& comm) {
  const int n = comm.size();
  expect(std::string(comm.backend()) == "mpi", "backend is '" + std::string(comm.backend()) +
                                                   "', want 'mpi'");
  // One machine: the local rank is the rank.
  expect(comm.local_rank() == comm.rank(), "local rank " + std::to_string(comm.local_rank()) +
                                               " on one machine, want " +
                                               std::to_string(comm.rank()));
  check_all_reduce<float>(comm, 1003);
  check_all_reduce<double>(comm, 17);

  double host[2] = {static_cast<double>(comm.rank() + 1), static_cast<double>(comm.rank() + 1)};
  comm.all_reduce_sum_host(host, 1);
  comm.all_reduce_max_host(host + 1, 1);
  expect(host[0] == n * (n + 1) / 2.0, "all_reduce_sum_host gave " + text_of(host[0]));
  expect(host[1] == n, "all_reduce_max_host gave " + text_of(host[1]));

  std::string text = comm.rank() == 0 ? std::string("rank 0's text, with\nnewline") : "";
  dist::broadcast_string(comm, text);
  expect(text == "rank 0's text, with\nnewline", "broadcast_string gave '" + text + "'");
  comm.barrier();

  // check_replicas: equal buffers pass; a buffer changed on the last rank fails on EVERY rank.
  std::vector<float> weights(100, 0.5f);
  bool threw = false;
  try {
    dist::check_replicas(comm, TensorView<const float>{weights.data(), Shape5{1, 1, 1, 1, 100}},
                         "equal buffers");
  } catch (const Error&) {
    threw = true;
  }
  expect(!threw, "check_replicas threw for equal buffers");
  if (comm.rank() == n - 1) weights[42] = 0.25f;
  std::string message;
  try {
    dist::check_replicas(comm, TensorView<const float>{weights.data(), Shape5{1, 1, 1, 1, 100}},
                         "a changed buffer");
  } catch (const Error& e) {
    message = e.what();
  }
  const std::string want = "rank(s) " + std::to_string(n - 1);
  expect(message.find(want) != std::string::npos &&
             message.find("a changed buffer") != std::string::npos,
         "check_replicas on a buffer changed on rank " + std::to_string(n - 1) +
             ": want an error naming '" + want + "', got '" + message + "'");
}

// One training sample of step `step`, number `index` within the step: a random input and
// random region targets, the same on every rank that builds it.
struct Sample {
  Tensor<float> x;
  Tensor<float> targets;
};

Sample make_sample(const UNet<float>& net, int step, int index) {
  Rng rng(1000003ull * static_cast<std::uint64_t>(step) + static_cast<std::uint64_t>(index) + 11);
  Sample s{Tensor<float>(Shape5{1, 4, 16, 16, 16}), Tensor<float>()};
  for (index_t i = 0; i < s.x.numel(); ++i) s.x[i] = static_cast<float>(rng.uniform(-1, 1));
  s.targets = Tensor<float>(net.output_shape(s.x.shape()));
  for (index_t i = 0; i < s.targets.numel(); ++i) {
    s.targets[i] = rng.uniform01() < 0.3 ? 1.0f : 0.0f;
  }
  return s;
}

// params.grads() <- the gradient of the soft Dice loss of one sample (assigned).
void sample_gradient(UNet<float>& net, Parameters<float>& params, const Sample& s) {
  Tensor<float> logits(net.output_shape(s.x.shape()));
  Tensor<float> dlogits(logits.shape());
  UNet<float>::Saved<Cpu> saved;
  net.forward(Cpu{}, s.x.cview(), logits.view(), &saved);
  (void)losses::soft_dice_loss<float>(logits.cview(), s.targets.cview(), dlogits.view());
  params.zero_grad();
  net.backward(Cpu{}, saved, dlogits.cview(), TensorView<float>{});
}

void check_training(dist::Communicator<Cpu>& comm) {
  const UNetConfig config = unet_preset("tiny");
  UNet<float> net(config), reference(config);
  Parameters<float> params(net), reference_params(reference);
  {
    Rng rng(7 + static_cast<std::uint64_t>(comm.rank()));  // different on every rank
    net.reset_parameters(rng);
    Rng reference_rng(7);  // rank 0's
    reference.reset_parameters(reference_rng);
  }
  optim::Adam<float> adam(params), reference_adam(reference_params);
  dist::broadcast_parameters(comm, params);
  dist::broadcast_optimizer_state(comm, adam);
  dist::SingleProcess<Cpu> single;
  auto grad_sum = Tensor<float>::zeros(params.grads().shape);

  constexpr int kSteps = 3;
  double worst = 0.0;
  for (int step = 0; step < kSteps; ++step) {
    // Data-parallel: this rank's sample of the step.
    sample_gradient(net, params, make_sample(net, step, comm.rank()));
    dist::average_gradients(comm, params, 1);
    adam.step();
    // One process: all samples of the step, gradients summed, averaged over size samples.
    for (int s = 0; s < comm.size(); ++s) {
      sample_gradient(reference, reference_params, make_sample(reference, step, s));
      if (s == 0) {
        DeviceTraits<Cpu>::copy(grad_sum.data(), reference_params.grads().data, grad_sum.bytes());
      } else {
        ops::add_inplace(Cpu{}, grad_sum.view(),
                         TensorView<const float>(reference_params.grads()));
      }
    }
    DeviceTraits<Cpu>::copy(reference_params.grads().data, grad_sum.data(), grad_sum.bytes());
    dist::average_gradients(single, reference_params, comm.size());
    reference_adam.step();

    index_t wrong = 0;
    for (index_t i = 0; i < params.size(); ++i) {
      const double a = params.values()[i], b = reference_params.values()[i];
      const double diff = std::abs(a - b) / std::max(std::abs(b), 1e-3);
      worst = std::max(worst, diff);
      wrong += diff > 1e-5;
    }
    expect(wrong == 0, "step " + std::to_string(step + 1) + ": " + std::to_string(wrong) +
                           " of " + std::to_string(params.size()) + " weights differ from the "
                           "one-process batch by more than 1e-5 (relative)");
    bool threw = false;
    try {
      dist::check_replicas(comm, TensorView<const float>(params.values()),
                           "the weights after step " + std::to_string(step + 1));
    } catch (const Error& e) {
      threw = true;
      std::cerr << e.what() << "\n";
    }
    expect(!threw, "replicas differ after step " + std::to_string(step + 1));
  }
  expect(adam.steps() == kSteps, "Adam did " + std::to_string(adam.steps()) + " steps");
  if (comm.rank() == 0) {
    std::cout << "data-parallel training: " << comm.size() << " ranks x 1 sample vs 1 process x "
              << comm.size() << " samples, " << kSteps << " Adam steps of the tiny UNet ("
              << params.count() << " weights): largest relative weight difference " << worst
              << std::endl;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  dist::MpiEnvironment environment;
  dist::MpiCommunicator comm;
  my_rank = comm.rank();
  const int last = comm.size() - 1;
  if (mode == "collectives") {
    const int want = argc > 2 ? std::atoi(argv[2]) : 2;
    expect(comm.size() == want, "the job has " + std::to_string(comm.size()) +
                                    " processes, want " + std::to_string(want) +
                                    " (is mpirun the launcher of this MPI library?)");
    if (comm.size() != want) return failures;
    check_collectives(comm);
    check_training(comm);
    if (comm.rank() == 0 && failures == 0) std::cout << "mpi_check collectives: all passed\n";
    return failures;
  }
  if (mode == "throw") {
    dist::run_or_abort(comm, "mpi_check", [&] {
      if (comm.rank() == last) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        throw Error("injected failure on the last rank");
      }
      double x = 1;
      comm.all_reduce_sum_host(&x, 1);  // waits for the last rank, which never comes
    });
    std::cerr << "mpi_check throw: rank " << comm.rank() << " was not ended" << std::endl;
    return 0;
  }
  if (mode == "die") {
    comm.barrier();
    if (comm.rank() == last) {
      std::cerr << "mpi_check die: rank " << comm.rank() << " exits now without MPI_Finalize"
                << std::endl;
      std::_Exit(3);
    }
    double x = 1;
    comm.all_reduce_sum_host(&x, 1);
    std::cerr << "mpi_check die: rank " << comm.rank() << " was not ended" << std::endl;
    return 0;
  }
  if (mode == "time" && argc > 2) {
    const index_t n = std::atoll(argv[2]);
    const int repeats = argc > 3 ? std::atoi(argv[3]) : 20;
    auto buffer = Tensor<float>::zeros(Shape5{1, 1, 1, 1, n});
    std::vector<double> seconds;
    for (int i = 0; i < repeats + 3; ++i) {
      comm.barrier();
      const auto start = std::chrono::steady_clock::now();
      comm.all_reduce_sum(buffer.view(), 0.5f);
      const auto end = std::chrono::steady_clock::now();
      if (i >= 3) seconds.push_back(std::chrono::duration<double>(end - start).count());
    }
    std::sort(seconds.begin(), seconds.end());
    if (comm.rank() == 0) {
      std::printf("all-reduce of %lld floats (%.2f MiB) over %d processes: median %.3f ms, "
                  "min %.3f ms, max %.3f ms (%d calls)\n",
                  static_cast<long long>(n), static_cast<double>(n) * 4 / (1 << 20), comm.size(),
                  1e3 * seconds[seconds.size() / 2], 1e3 * seconds.front(), 1e3 * seconds.back(),
                  repeats);
    }
    return 0;
  }
  std::cerr << "usage: mpi_check collectives N | throw | die | time N [R]" << std::endl;
  return 2;
}
