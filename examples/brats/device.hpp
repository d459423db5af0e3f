// revox-brats on either device: what the trainer (trainer.hpp) and the predictor
// (predict.hpp, inference.hpp) need to run the model on the CPU (`Cpu`) or a GPU (`Cuda`).
//
// Data loading, augmentation, metrics and file I/O stay on the host; only the model, its
// flat parameter / gradient buffers, the optimizer state and the per-step tensors (image,
// targets, logits and their gradient) live on the device. On the CPU every helper here is a
// no-op or a plain view (the CPU path does no extra copy); on a GPU they copy.
//
//   stage(dev, host)          a TensorView<const float> of `host` on dev: the host tensor
//                             itself on the CPU, a device copy (owned by the Staged) on a GPU
//   device_to_host, host_to_device, device_to_device (dev, dst, src, count): float copies;
//                             device_to_host waits for dev's stream
//   HostState<Dev>            the host side of the weights and the Adam state, which
//                             initialisation (layers' reset_parameters write through host
//                             pointers), checkpoints (always written from and read into host
//                             memory, so the files are the same on both devices) and replica
//                             checks use. On the CPU it refers to the training Parameters and
//                             Adam themselves; on a GPU it is a host mirror (a host UNet,
//                             Parameters and Adam of the same layout) with pull() (device ->
//                             mirror) and push() (mirror -> device).
//
// The host <-> device copies are DeviceTraits<Dev>'s (revox/core/device.hpp; a Cuda's in
// revox/core/cuda.hpp). The CUDA side (cuda_copy_on_device and the run_*_on_cuda functions
// declared here) is defined in brats_cuda.cu, which is compiled only when CUDA is available
// (REVOX_BRATS_WITH_CUDA); a CPU-only build never instantiates the templates below with Cuda.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "revox/core/device.hpp"
#include "revox/core/error.hpp"
#include "revox/core/parameters.hpp"
#include "revox/core/tensor.hpp"
#include "revox/dist/communicator.hpp"
#include "revox/models/unet.hpp"
#include "revox/optim/adam.hpp"

namespace revox::brats {

// Defined in brats_cuda.cu. A copy of `count` floats on dev's stream.
void cuda_copy_on_device(const Cuda& dev, float* device_dst, const float* device_src,
                         index_t count);

// host_dst[0, count) <- src[0, count) (src in dev's memory), on dev's stream; waits for it
// (the host reads the data next).
template <class Dev>
void device_to_host(const Dev& dev, float* host_dst, const float* src, index_t count) {
  DeviceTraits<Dev>::copy_to_host(dev, host_dst, src,
                                  static_cast<std::size_t>(count) * sizeof(float));
}

// dst[0, count) <- host_src[0, count) (dst in dev's memory), on dev's stream.
template <class Dev>
void host_to_device(const Dev& dev, float* dst, const float* host_src, index_t count) {
  DeviceTraits<Dev>::copy_from_host(dev, dst, host_src,
                                    static_cast<std::size_t>(count) * sizeof(float));
}

// dst[0, count) <- src[0, count), both in dev's memory.
template <class Dev>
void device_to_device(const Dev& dev, float* dst, const float* src, index_t count) {
  if constexpr (is_cpu_v<Dev>) {
    (void)dev;
    DeviceTraits<Cpu>::copy(dst, src, static_cast<std::size_t>(count) * sizeof(float));
  } else {
    cuda_copy_on_device(dev, dst, src, count);
  }
}

// A host tensor's values on dev; see the top of this file.
template <class Dev>
struct Staged {
  Tensor<float, Dev> owned;  // empty on the CPU
  TensorView<const float> view;
};

template <class Dev>
Staged<Dev> stage(const Dev& dev, const Tensor<float>& host) {
  Staged<Dev> staged;
  if constexpr (is_cpu_v<Dev>) {
    (void)dev;
    staged.view = host.cview();
  } else {
    staged.owned = Tensor<float, Dev>(host.shape());
    host_to_device(dev, staged.owned.data(), host.data(), host.numel());
    staged.view = staged.owned.cview();
  }
  return staged;
}

// A device tensor's values on the host (a copy on a GPU).
template <class Dev>
Tensor<float> host_copy(const Dev& dev, TensorView<const float> values) {
  Tensor<float> host(values.shape);
  device_to_host(dev, host.data(), values.data, values.numel());
  return host;
}

// The host side of the weights and Adam state; see the top of this file.
// A GPU: a host mirror (instantiated only in CUDA translation units).
template <class Dev>
class HostState {
 public:
  // `adam` may be null (inference: weights only).
  HostState(const Dev& dev, const UNetConfig& config, UNet<float>&,
            Parameters<float, Dev>& params, optim::Adam<float, Dev>* adam,
            const optim::AdamOptions& adam_options)
      : dev_(dev),
        net_(std::make_unique<UNet<float>>(config)),
        params_(std::make_unique<Parameters<float>>(*net_)),
        device_params_(params),
        device_adam_(adam) {
    REVOX_CHECK(params_->size() == params.size(), "HostState: the host mirror has ",
                params_->size(), " parameter elements, the device model ", params.size());
    if (adam != nullptr) adam_ = std::make_unique<optim::Adam<float>>(*params_, adam_options);
  }
  UNet<float>& net() { return *net_; }
  Parameters<float>& params() { return *params_; }
  optim::Adam<float>& adam() {
    REVOX_CHECK(adam_ != nullptr, "HostState: no optimizer");
    return *adam_;
  }
  // Device weights -> host mirror.
  void pull_weights() {
    device_to_host(dev_, params_->values().data, device_params_.values().data, params_->size());
  }
  // Device weights and Adam state (buffers and step count) -> host mirror.
  void pull() {
    pull_weights();
    if (adam_ == nullptr) return;
    std::vector<float*> host_buffers;
    adam_->visit_state([&](const char*, TensorView<float> b) { host_buffers.push_back(b.data); });
    std::size_t i = 0;
    const index_t count = params_->size();
    std::as_const(*device_adam_).visit_state([&](const char*, TensorView<const float> b) {
      device_to_host(dev_, host_buffers.at(i++), b.data, count);
    });
    adam_->set_steps(device_adam_->steps());
  }
  // Host mirror -> device weights and Adam state.
  void push() {
    const index_t count = params_->size();
    host_to_device(dev_, device_params_.values().data, params_->values().data, count);
    if (adam_ == nullptr) return;
    std::vector<const float*> host_buffers;
    std::as_const(*adam_).visit_state(
        [&](const char*, TensorView<const float> b) { host_buffers.push_back(b.data); });
    std::size_t i = 0;
    device_adam_->visit_state([&](const char*, TensorView<float> b) {
      host_to_device(dev_, b.data, host_buffers.at(i++), count);
    });
    device_adam_->set_steps(adam_->steps());
  }

 private:
  Dev dev_;
  std::unique_ptr<UNet<float>> net_;
  std::unique_ptr<Parameters<float>> params_;
  std::unique_ptr<optim::Adam<float>> adam_;
  Parameters<float, Dev>& device_params_;
  optim::Adam<float, Dev>* device_adam_;
};

// The CPU: the training buffers themselves.
template <>
class HostState<Cpu> {
 public:
  HostState(const Cpu&, const UNetConfig&, UNet<float>& net, Parameters<float>& params,
            optim::Adam<float>* adam, const optim::AdamOptions&)
      : net_(net), params_(params), adam_(adam) {}
  UNet<float>& net() { return net_; }
  Parameters<float>& params() { return params_; }
  optim::Adam<float>& adam() {
    REVOX_CHECK(adam_ != nullptr, "HostState: no optimizer");
    return *adam_;
  }
  void pull_weights() {}
  void pull() {}
  void push() {}

 private:
  UNet<float>& net_;
  Parameters<float>& params_;
  optim::Adam<float>* adam_;
};

// ---- --device and --gpu of `train` and `predict` ------------------------------------------

struct DeviceChoice {
  std::string device = "cpu";  // "cpu" or "cuda"
  int gpu = -1;                // --gpu N; -1: not given (GPU 0, or the local rank under mpirun)
};

// Throws revox::Error naming the option when the choice cannot run in this build.
inline void check_device_choice(const DeviceChoice& choice) {
  REVOX_CHECK(choice.device == "cpu" || choice.device == "cuda", "--device must be cpu or cuda, "
              "got '", choice.device, "'");
  REVOX_CHECK(choice.gpu < 0 || choice.device == "cuda", "--gpu ", choice.gpu,
              " selects a GPU and needs --device cuda");
#if !defined(REVOX_BRATS_WITH_CUDA)
  REVOX_CHECK(choice.device != "cuda", "--device cuda: this revox-brats was built without CUDA "
              "support (nvcc was not found when revox was configured, so REVOX_WITH_CUDA is "
              "OFF); use --device cpu, or rebuild with the CUDA toolkit installed");
#endif
}

// Defined in brats_cuda.cu: `train` and `predict` on a GPU. `gpu` as in DeviceChoice. Both
// throw revox::Error with "no CUDA device" when the machine has no usable GPU (no GPU or no
// driver), and name --gpu when it is out of range.
struct TrainOptions;
struct PredictArgs;
void run_training_on_cuda(const TrainOptions& options, int gpu);
void run_predict_on_cuda(const PredictArgs& args, int gpu);

}  // namespace revox::brats
