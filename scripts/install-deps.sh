#!/usr/bin/env bash
# Installs the Debian 12 packages revox needs to build and test. Idempotent: packages that
# are already installed are skipped, and apt is only called when something is missing.
# Run as root (CI) or with sudo available.
#   scripts/install-deps.sh           build + test dependencies
#   scripts/install-deps.sh --peers   also oneDNN, for the peer benchmarks
#   scripts/install-deps.sh --fuzz    also clang and its sanitizer/libFuzzer runtimes, for
#                                     benchmarks/fuzz.sh (Debian 12's clang-14 does not pull
#                                     in libclang-rt-14-dev, which holds libclang_rt.fuzzer)
# Options combine: scripts/install-deps.sh --peers --fuzz
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  catch2               # tests (v2.13)
  python3              # tests: the docs check (tests/docs/samples.py)
  nlohmann-json3-dev   # safetensors headers, configs
  libnifti2-dev libznz-dev zlib1g-dev  # NIfTI I/O (revox::nifti)
  libbenchmark-dev     # Google Benchmark (benchmarks/)
  libcli11-dev         # command lines of examples/brats (revox-brats)
  libstb-dev           # stb_image_write (PNG) and stb_truetype (text) for revox-brats' pictures
  fonts-dejavu-core    # DejaVu Sans for the pictures' text (without it: a bitmap font)
  openmpi-bin libopenmpi-dev  # data-parallel training under mpirun (revox::mpi) and its tests
)
for option in "$@"; do
  case "$option" in
    --peers) packages+=(libdnnl-dev ocl-icd-opencl-dev) ;;  # Debian's oneDNN CMake config requires OpenCL
    --fuzz) packages+=(clang libclang-rt-14-dev) ;;
    *) echo "install-deps: unknown option '$option' (expected --peers or --fuzz)" >&2; exit 2 ;;
  esac
done

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
  "${missing[@]}"
