// revox/core/cpu_features.hpp — the CPU's SIMD features, detected at run time.
//
// A revox binary built on one machine must run correctly on another: code that uses an
// instruction set beyond the compiler's flags (AVX-512, AVX512-BF16, AMX) is compiled with a
// function-level target attribute and called only when cpu_features() says the CPU and the
// operating system support it; otherwise the portable path runs.
//
// cpu_features() reads CPUID and XCR0 once: a feature counts only if the OS saves its
// registers (XGETBV: the ZMM state for AVX-512, the tile state for AMX). AMX also needs the
// process to ask Linux for the tile data state (arch_prctl ARCH_REQ_XCOMP_PERM) before its
// first tile instruction; amx_* say only that the CPU and OS support it.
//
// cpu_path() is the widest path revox's run-time dispatched kernels take: CpuPath::avx512
// where avx512f is supported, CpuPath::portable otherwise or when the environment variable
// REVOX_CPU_PATH=portable asks for it (to run a binary as it runs on a machine without
// AVX-512). Any other value of REVOX_CPU_PATH is an error naming the accepted ones.
#pragma once

#include <cstdlib>
#include <string>

#include "revox/core/error.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define REVOX_X86_CPUID 1
#else
#define REVOX_X86_CPUID 0
#endif

namespace revox {

struct CpuFeatures {
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512_bf16 = false;  // VCVTNE2PS2BF16, VDPBF16PS
  bool amx_tile = false;
  bool amx_bf16 = false;
};

namespace detail {

inline CpuFeatures detect_cpu_features() {
  CpuFeatures f;
#if REVOX_X86_CPUID
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0) return f;
  if ((c & (1u << 27)) == 0) return f;  // no OSXSAVE: XGETBV unavailable
  unsigned xcr0 = 0, xcr0_high = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0), "=d"(xcr0_high) : "c"(0));
  // XMM, YMM, opmask, ZMM_Hi256 and Hi16_ZMM state (bits 1, 2, 5, 6, 7).
  const bool zmm_state = (xcr0 & 0xE6u) == 0xE6u;
  // XTILECFG and XTILEDATA state (bits 17, 18).
  const bool tile_state = (xcr0 & (3u << 17)) == (3u << 17);
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  f.avx512f = zmm_state && (b & (1u << 16)) != 0;
  f.avx512bw = zmm_state && (b & (1u << 30)) != 0;
  f.amx_bf16 = tile_state && (d & (1u << 22)) != 0;
  f.amx_tile = tile_state && (d & (1u << 24)) != 0;
  const unsigned max_subleaf = a;
  if (max_subleaf >= 1) {
    __cpuid_count(7, 1, a, b, c, d);
    f.avx512_bf16 = f.avx512f && (a & (1u << 5)) != 0;
  }
#endif
  return f;
}

}  // namespace detail

// What this machine's CPU and OS support (detected once).
inline const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detail::detect_cpu_features();
  return features;
}

// The paths of run-time dispatched kernels, narrowest first.
enum class CpuPath { portable, avx512 };

inline const char* cpu_path_name(CpuPath path) {
  return path == CpuPath::avx512 ? "avx512" : "portable";
}

// True when `path` can run on this machine.
inline bool cpu_path_available(CpuPath path) {
  return path == CpuPath::portable || cpu_features().avx512f;
}

// The widest available path, or the portable one when REVOX_CPU_PATH=portable (read once).
inline CpuPath cpu_path() {
  static const CpuPath path = [] {
    const char* requested = std::getenv("REVOX_CPU_PATH");
    if (requested != nullptr && *requested != '\0') {
      const std::string value(requested);
      REVOX_CHECK(value == "portable" || value == "best",
                  "REVOX_CPU_PATH: expected \"portable\" or \"best\", got \"", value, "\"");
      if (value == "portable") return CpuPath::portable;
    }
    return cpu_path_available(CpuPath::avx512) ? CpuPath::avx512 : CpuPath::portable;
  }();
  return path;
}

}  // namespace revox
