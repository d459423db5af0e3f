// revox/core/eigen.hpp — how revox includes Eigen (<Eigen/Core>), so that the CPU kernels
// built on it compile cleanly in CUDA translation units too.
//
// A .cu file that runs both devices (a parity test, the trainer) includes the CPU kernels
// (ops/cpu/conv3d.hpp, ops/cpu/pointwise_conv3d.hpp use Eigen's GEMM) next to the CUDA ones.
// Under nvcc, Eigen 3.4 marks its functions __host__ __device__, and nvcc 13.0 warns about
// that in Eigen's own headers and again in every instantiation (#20012, #20013, #20015),
// where `#pragma nv_diag_suppress` around the include no longer applies. revox never calls
// Eigen from device code, so under nvcc this header defines EIGEN_NO_CUDA before including
// Eigen: Eigen then compiles in a .cu file exactly as in a .cpp file (host functions only),
// without warnings, and our own code keeps every warning.
// Include revox before Eigen in a .cu file (or define EIGEN_NO_CUDA yourself); an Eigen
// included earlier without it keeps its device annotations and their warnings.
#pragma once

#if defined(__CUDACC__) && !defined(EIGEN_NO_CUDA)
#define EIGEN_NO_CUDA
#endif

#include <Eigen/Core>
