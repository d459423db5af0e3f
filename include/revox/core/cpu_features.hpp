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
// first tile instruction; amx_* say only that the CPU and OS support it, and the amx_bf16
// path counts as available only once that request has been granted.
//
// cpu_path() is the widest path revox's run-time dispatched kernels take (CpuPath below:
// portable, avx512, avx512_bf16), or a narrower one the environment variable REVOX_CPU_PATH
// names (to run a binary as it runs on a machine without the wider ones). A value naming no
// path, or one this CPU lacks, is an error naming the accepted or the available ones.
#pragma once

#include <cstdlib>
#include <string>
#include <vector>

#include "revox/core/error.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
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
  unsigned xcr0_low = 0, xcr0_high = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
  const unsigned long long xcr0 =
      (static_cast<unsigned long long>(xcr0_high) << 32) | xcr0_low;
  // XMM, YMM, opmask, ZMM_Hi256 and Hi16_ZMM state (bits 1, 2, 5, 6, 7).
  const bool zmm_state = (xcr0 & 0xE6ull) == 0xE6ull;
  // XTILECFG and XTILEDATA state (bits 17, 18).
  const bool tile_state = (xcr0 & (3ull << 17)) == (3ull << 17);
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

// The paths of run-time dispatched kernels, narrowest first; each needs the ones before it.
//   portable      C++ compiled with the build's flags (every machine)
//   avx512        AVX-512F intrinsics (float arithmetic, bfloat16 conversions)
//   avx512_bf16   AVX512-BF16's VDPBF16PS for bfloat16 products (Zen 4, Cooper Lake and later)
//   amx_bf16      AMX tiles (TDPBF16PS) for bfloat16 matrix products (Sapphire Rapids and
//                 later), once Linux has granted this process the tile data state
enum class CpuPath { portable, avx512, avx512_bf16, amx_bf16 };
inline constexpr CpuPath kAllCpuPaths[] = {CpuPath::portable, CpuPath::avx512,
                                           CpuPath::avx512_bf16, CpuPath::amx_bf16};

namespace detail {
// Asks Linux once for the AMX tile data state (arch_prctl ARCH_REQ_XCOMP_PERM, XTILEDATA =
// feature 18), granted to every thread of the process; false where refused or not Linux.
inline bool amx_permission() {
  static const bool granted = [] {
#if REVOX_X86_CPUID && defined(__linux__)
    constexpr long kArchReqXcompPerm = 0x1023;
    constexpr long kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
    return false;
#endif
  }();
  return granted;
}
}  // namespace detail

inline const char* cpu_path_name(CpuPath path) {
  switch (path) {
    case CpuPath::avx512: return "avx512";
    case CpuPath::avx512_bf16: return "avx512_bf16";
    case CpuPath::amx_bf16: return "amx_bf16";
    case CpuPath::portable: break;
  }
  return "portable";
}

// True when `path` can run on this machine.
inline bool cpu_path_available(CpuPath path) {
  switch (path) {
    case CpuPath::avx512: return cpu_features().avx512f;
    case CpuPath::avx512_bf16: return cpu_features().avx512_bf16;
    case CpuPath::amx_bf16:
      return cpu_features().avx512_bf16 && cpu_features().amx_tile && cpu_features().amx_bf16 &&
             detail::amx_permission();
    case CpuPath::portable: break;
  }
  return true;
}

// Every path this machine can run, narrowest first (tests run each of them).
inline std::vector<CpuPath> available_cpu_paths() {
  std::vector<CpuPath> paths;
  for (CpuPath p : kAllCpuPaths) {
    if (cpu_path_available(p)) paths.push_back(p);
  }
  return paths;
}

inline std::string available_cpu_path_names() {
  std::string names;
  for (CpuPath p : available_cpu_paths()) names += (names.empty() ? "" : ", ") + std::string(cpu_path_name(p));
  return names;
}

// The widest available path, or the one REVOX_CPU_PATH names (read once): "portable",
// "avx512" or "avx512_bf16" to run a binary as it runs on a machine with no more than that
// (an error if this machine lacks it), "best" or unset for the widest.
inline CpuPath cpu_path() {
  static const CpuPath path = [] {
    const char* requested = std::getenv("REVOX_CPU_PATH");
    if (requested != nullptr && *requested != '\0' && std::string(requested) != "best") {
      const std::string value(requested);
      for (CpuPath p : kAllCpuPaths) {
        if (value != cpu_path_name(p)) continue;
        REVOX_CHECK(cpu_path_available(p), "REVOX_CPU_PATH=", value,
                    ": this CPU lacks that path; available: ", available_cpu_path_names());
        return p;
      }
      throw Error(detail::concat("REVOX_CPU_PATH: expected \"portable\", \"avx512\", "
                                 "\"avx512_bf16\", \"amx_bf16\" or \"best\", got \"",
                                 value, "\""));
    }
    return available_cpu_paths().back();
  }();
  return path;
}

}  // namespace revox
