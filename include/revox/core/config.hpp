// revox/core/config.hpp — compile-time configuration shared by host and device code.
//
// REVOX_HD marks small index helpers that must compile for both the CPU and CUDA
// (nvcc defines __CUDACC__); index_t is the 64-bit signed type used for every element
// count and offset, because one 60-channel map at 256x256x160 already has 6.3e8 elements
// and batched or wider layers pass 2^31.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define REVOX_HD __host__ __device__
#else
#define REVOX_HD
#endif

namespace revox {

using index_t = std::int64_t;

// Keeps a function parameter out of template argument deduction (C++20's
// std::type_identity_t), e.g. so that a plain nullptr can stand for an optional pointer.
template <class T>
struct type_identity {
  using type = T;
};
template <class T>
using nondeduced_t = typename type_identity<T>::type;

}  // namespace revox
