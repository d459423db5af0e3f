#!/usr/bin/env bash
# Copies the header-only build dependency of revox's CUDA tests (nlohmann_json, with its CMake
# package files) from this Debian machine into .gpu-deps/, laid out as a prefix,
# so that a GPU machine without Debian's packages or a network can build them. When this
# machine has them, also what revox-brats needs (run_all.sh then builds it and runs its
# --device cuda end-to-end test): CLI11 and stb (headers), NIfTI (nifti_clib headers with the
# static libnifti2.a / libznz.a, so the binary needs no Debian shared library there) and zlib
# (zlib.h, static libz.a); .gpu-deps/brats-deps marks that they were copied.
#   bash scripts/gpu-deps.sh                  here (needs nlohmann-json3-dev)
#   bash benchmarks/cuda/run_all.sh           there, with .gpu-deps carried along
# .gpu-deps/ is ignored by git.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=$root/.gpu-deps
for path in /usr/include/nlohmann /usr/share/cmake/nlohmann_json; do
  [[ -e $path ]] || { echo "gpu-deps: $path is missing; run scripts/install-deps.sh" >&2; exit 1; }
done
rm -rf "$dest"
mkdir -p "$dest/usr/include" "$dest/usr/share/cmake"
cp -r /usr/include/nlohmann "$dest/usr/include/"
cp -r /usr/share/cmake/nlohmann_json "$dest/usr/share/cmake/"
brats=(/usr/include/CLI /usr/share/cmake/CLI11 /usr/include/stb /usr/include/nifti
       /usr/lib/x86_64-linux-gnu/libnifti2.a /usr/lib/x86_64-linux-gnu/libznz.a
       /usr/include/zlib.h /usr/include/zconf.h /usr/lib/x86_64-linux-gnu/libz.a)
missing=0
for path in "${brats[@]}"; do
  [[ -e $path ]] || { echo "gpu-deps: no $path: revox-brats not carried"; missing=1; }
done
if [[ $missing == 0 ]]; then
  mkdir -p "$dest/usr/lib"
  cp -r /usr/include/CLI /usr/include/stb /usr/include/nifti /usr/include/zlib.h \
        /usr/include/zconf.h "$dest/usr/include/"
  cp -r /usr/share/cmake/CLI11 "$dest/usr/share/cmake/"
  cp /usr/lib/x86_64-linux-gnu/libnifti2.a /usr/lib/x86_64-linux-gnu/libznz.a \
     /usr/lib/x86_64-linux-gnu/libz.a "$dest/usr/lib/"
  touch "$dest/brats-deps"
fi
echo "gpu-deps: wrote $dest ($(du -sh "$dest" | cut -f1))"
