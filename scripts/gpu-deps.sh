#!/usr/bin/env bash
# Copies the header-only build dependencies of revox's CUDA tests (Eigen, nlohmann_json, with
# their CMake package files) from this Debian machine into .gpu-deps/, laid out as a prefix,
# so that a GPU machine without Debian's packages or a network can build them:
#   bash scripts/gpu-deps.sh                  here (needs libeigen3-dev, nlohmann-json3-dev)
#   bash benchmarks/cuda/run_all.sh           there, with .gpu-deps carried along
# .gpu-deps/ is ignored by git.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=$root/.gpu-deps
for path in /usr/include/eigen3 /usr/share/eigen3/cmake /usr/include/nlohmann \
            /usr/share/cmake/nlohmann_json; do
  [[ -e $path ]] || { echo "gpu-deps: $path is missing; run scripts/install-deps.sh" >&2; exit 1; }
done
rm -rf "$dest"
mkdir -p "$dest/usr/include" "$dest/usr/share/eigen3" "$dest/usr/share/cmake"
cp -r /usr/include/eigen3 /usr/include/nlohmann "$dest/usr/include/"
cp -r /usr/share/eigen3/cmake "$dest/usr/share/eigen3/"
cp -r /usr/share/cmake/nlohmann_json "$dest/usr/share/cmake/"
echo "gpu-deps: wrote $dest ($(du -sh "$dest" | cut -f1))"
