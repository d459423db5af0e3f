// revox/metrics/surface_elements.hpp — HD95 on surface elements, as DeepMind's
// surface-distance package computes it (github.com/deepmind/surface-distance,
// compute_surface_distances + compute_robust_hausdorff), which the BraTS 2023 evaluation code
// (github.com/rachitsaluja/BraTS-2023-Metrics, metrics.py) uses for its lesion-wise and
// full-volume HD95.
//
// The surface is sampled on the voxel corners instead of the voxels: for every corner of the
// bounding box of pred OR truth (one more than the box per axis), the 8 voxels around it form
// a neighbour code (bit 7 - (4 x + 2 y + z) set when the voxel at offset (x, y, z) in {0, 1}^3,
// in (W, H, D) order, is inside the mask; outside the box counts as outside). A corner is on
// the surface when its code is neither 0 nor 255, and it carries the area of the marching-
// cubes triangles of its code: the sum over the code's triangle normals n (|n| = the
// triangle's area at 1 mm) of |(n_x sy sz, n_y sx sz, n_z sx sy)|. For each direction (truth
// to pred, pred to truth), the distances (mm) from the surface corners of one mask to the
// nearest surface corner of the other are sorted, and the directed 95th percentile is the
// first distance whose cumulative area reaches 95% of the total (numpy.searchsorted). The
// HD95 is the larger of the two.
//
// kSurfaceNormals is DeepMind's lookup_tables.neighbour_code_to_normals times 8 (exact
// integers): Copyright 2018 Google Inc., Licensed under the Apache License, Version 2.0
// (http://www.apache.org/licenses/LICENSE-2.0). Each row: the number of normals, then the
// normals (x, y, z) in units of 1/8.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

#include "revox/core/error.hpp"
#include "revox/core/shape.hpp"
#include "revox/metrics/distance_transform.hpp"

namespace revox::metrics {

namespace detail {

struct SurfaceNormals {
  int count;
  int normals[4][3];  // NOLINT: a C array keeps the table's initialisers plain
};

// clang-format off
inline constexpr std::array<SurfaceNormals, 256> kSurfaceNormals = {{
    {1, {{0, 0, 0}}},
    {1, {{1, 1, 1}}},
    {1, {{-1, -1, 1}}},
    {2, {{-2, -2, 0}, {2, 2, 0}}},
    {1, {{1, -1, 1}}},
    {2, {{-2, 0, -2}, {2, 0, 2}}},
    {2, {{1, -1, 1}, {-1, -1, 1}}},
    {3, {{4, 0, 0}, {2, 2, 2}, {1, 1, 1}}},
    {1, {{-1, 1, 1}}},
    {2, {{1, 1, 1}, {-1, 1, 1}}},
    {2, {{-2, 0, 2}, {-2, 0, 2}}},
    {3, {{4, 0, 0}, {-2, -2, 2}, {-1, -1, 1}}},
    {2, {{2, -2, 0}, {2, -2, 0}}},
    {3, {{4, 0, 0}, {2, -2, 2}, {-1, 1, -1}}},
    {3, {{-4, 0, 0}, {-2, 2, 2}, {-1, 1, 1}}},
    {2, {{4, 0, 0}, {4, 0, 0}}},
    {1, {{1, -1, -1}}},
    {2, {{0, -2, -2}, {0, 2, 2}}},
    {2, {{-1, -1, 1}, {1, -1, -1}}},
    {3, {{0, -4, 0}, {2, 2, 2}, {1, 1, 1}}},
    {2, {{1, -1, 1}, {1, -1, -1}}},
    {3, {{0, 0, -4}, {2, 2, 2}, {-1, -1, -1}}},
    {3, {{-1, -1, 1}, {1, -1, 1}, {1, -1, -1}}},
    {4, {{-1, -1, -1}, {-2, -2, -2}, {2, 2, 2}, {1, 1, 1}}},
    {2, {{-1, 1, 1}, {1, -1, -1}}},
    {3, {{0, -2, -2}, {0, 2, 2}, {-1, 1, 1}}},
    {3, {{-2, 0, 2}, {-2, 0, 2}, {1, -1, -1}}},
    {4, {{1, 1, 1}, {3, 3, 3}, {0, -2, 2}, {-2, 0, 2}}},
    {3, {{1, -1, -1}, {2, -2, 0}, {2, -2, 0}}},
    {4, {{3, 3, 3}, {0, 2, -2}, {-1, -1, -1}, {-2, 2, 0}}},
    {4, {{-4, 0, 0}, {-1, -1, -1}, {-2, -2, -2}, {1, 1, 1}}},
    {3, {{-4, 0, 0}, {-1, -1, -1}, {-2, -2, -2}}},
    {1, {{1, -1, 1}}},
    {2, {{1, 1, 1}, {1, -1, 1}}},
    {2, {{0, -2, 2}, {0, 2, -2}}},
    {3, {{0, -4, 0}, {1, 1, -1}, {2, 2, -2}}},
    {2, {{1, -1, 1}, {1, -1, 1}}},
    {3, {{1, -1, 1}, {-2, 0, -2}, {2, 0, 2}}},
    {3, {{0, -2, 2}, {0, 2, -2}, {1, -1, 1}}},
    {4, {{-3, -3, 3}, {0, 2, 2}, {1, 1, -1}, {-2, 0, -2}}},
    {2, {{-1, 1, 1}, {1, -1, 1}}},
    {3, {{1, 1, 1}, {1, -1, 1}, {-1, 1, 1}}},
    {3, {{0, 0, 4}, {-2, -2, 2}, {-1, -1, 1}}},
    {4, {{2, 2, -2}, {2, 2, -2}, {1, 1, -1}, {-1, -1, 1}}},
    {3, {{1, -1, 1}, {2, -2, 0}, {2, -2, 0}}},
    {4, {{4, 0, 0}, {2, -2, 2}, {-1, 1, -1}, {1, -1, 1}}},
    {4, {{0, 2, -2}, {3, -3, -3}, {-1, 1, 1}, {2, 2, 0}}},
    {3, {{-4, 0, 0}, {-2, -2, 2}, {-1, -1, 1}}},
    {2, {{2, -2, 0}, {-2, 2, 0}}},
    {3, {{0, 4, 0}, {-2, 2, 2}, {1, -1, -1}}},
    {3, {{0, 4, 0}, {1, -1, 1}, {-2, 2, -2}}},
    {2, {{0, 4, 0}, {0, -4, 0}}},
    {3, {{2, -2, 0}, {-2, 2, 0}, {1, -1, 1}}},
    {4, {{-3, -3, -3}, {-2, 0, 2}, {-1, -1, -1}, {-2, 2, 0}}},
    {4, {{1, 1, 1}, {0, -4, 0}, {-2, -2, -2}, {-1, -1, -1}}},
    {3, {{0, -4, 0}, {-2, -2, -2}, {-1, -1, -1}}},
    {3, {{-1, 1, 1}, {2, -2, 0}, {-2, 2, 0}}},
    {4, {{0, 4, 0}, {2, 2, -2}, {-1, -1, 1}, {-1, -1, 1}}},
    {4, {{-3, 3, -3}, {-2, -2, 0}, {-1, 1, -1}, {-2, 0, 2}}},
    {3, {{0, 4, 0}, {2, 2, -2}, {-1, -1, 1}}},
    {4, {{2, -2, 0}, {-2, 2, 0}, {2, -2, 0}, {2, -2, 0}}},
    {3, {{-2, -2, 0}, {-2, -2, 0}, {-1, -1, 1}}},
    {3, {{1, 1, 1}, {-2, -2, 0}, {-2, -2, 0}}},
    {2, {{-2, -2, 0}, {-2, -2, 0}}},
    {1, {{-1, -1, 1}}},
    {2, {{1, 1, 1}, {-1, -1, 1}}},
    {2, {{-1, -1, 1}, {-1, -1, 1}}},
    {3, {{-1, -1, 1}, {-2, -2, 0}, {2, 2, 0}}},
    {2, {{0, -2, 2}, {0, -2, 2}}},
    {3, {{0, 0, 4}, {2, -2, 2}, {1, -1, 1}}},
    {3, {{0, -2, 2}, {0, -2, 2}, {-1, -1, 1}}},
    {4, {{3, -3, 3}, {0, -2, -2}, {-1, 1, -1}, {2, 2, 0}}},
    {2, {{-1, -1, 1}, {-1, 1, 1}}},
    {3, {{1, 1, 1}, {-1, -1, 1}, {-1, 1, 1}}},
    {3, {{-1, -1, 1}, {-2, 0, 2}, {-2, 0, 2}}},
    {4, {{4, 0, 0}, {-2, -2, 2}, {-1, -1, 1}, {-1, -1, 1}}},
    {3, {{0, 4, 0}, {-2, 2, -2}, {1, -1, 1}}},
    {4, {{-2, 2, -2}, {-2, 2, -2}, {-1, 1, -1}, {-1, 1, -1}}},
    {4, {{-2, 0, -2}, {3, -3, -3}, {0, 2, -2}, {-1, 1, 1}}},
    {3, {{4, 0, 0}, {-2, 2, -2}, {1, -1, 1}}},
    {2, {{-2, 0, 2}, {2, 0, -2}}},
    {3, {{0, 0, 4}, {-2, 2, 2}, {-1, 1, 1}}},
    {3, {{-1, -1, 1}, {-2, 0, 2}, {2, 0, -2}}},
    {4, {{-2, 0, -2}, {-3, 3, 3}, {-2, -2, 0}, {-1, 1, 1}}},
    {3, {{0, 0, -4}, {2, 2, -2}, {-1, -1, 1}}},
    {2, {{0, 0, 4}, {0, 0, 4}}},
    {4, {{1, 1, 1}, {1, 1, 1}, {2, 2, 2}, {0, 0, 4}}},
    {3, {{1, 1, 1}, {2, 2, 2}, {0, 0, 4}}},
    {3, {{-2, 0, 2}, {2, 0, -2}, {-1, 1, 1}}},
    {4, {{0, 0, 4}, {2, -2, 2}, {1, -1, 1}, {1, -1, 1}}},
    {4, {{-2, 0, 2}, {-2, 0, 2}, {-2, 0, 2}, {2, 0, -2}}},
    {3, {{1, -1, 1}, {2, 0, 2}, {2, 0, 2}}},
    {4, {{2, 0, 2}, {-3, -3, 3}, {-2, 2, 0}, {-1, -1, 1}}},
    {3, {{0, 0, 4}, {2, -2, 2}, {1, -1, 1}}},
    {3, {{1, 1, 1}, {2, 0, 2}, {2, 0, 2}}},
    {2, {{2, 0, 2}, {2, 0, 2}}},
    {2, {{-1, -1, 1}, {1, -1, 1}}},
    {3, {{1, 1, 1}, {-1, -1, 1}, {1, -1, 1}}},
    {3, {{-1, -1, 1}, {0, -2, 2}, {0, 2, -2}}},
    {4, {{0, -4, 0}, {1, 1, -1}, {2, 2, -2}, {-1, -1, 1}}},
    {3, {{0, -2, 2}, {0, -2, 2}, {1, -1, 1}}},
    {4, {{0, 0, 4}, {2, -2, 2}, {1, -1, 1}, {1, -1, 1}}},
    {4, {{0, -2, 2}, {0, -2, 2}, {0, -2, 2}, {0, 2, -2}}},
    {3, {{0, 2, 2}, {0, 2, 2}, {1, -1, -1}}},
    {3, {{-1, 1, 1}, {1, -1, 1}, {-1, -1, 1}}},
    {4, {{-1, 1, 1}, {1, -1, 1}, {-1, -1, 1}, {1, 1, 1}}},
    {4, {{0, 0, 4}, {-2, -2, 2}, {-1, -1, 1}, {-1, -1, 1}}},
    {3, {{1, 1, 1}, {1, -1, 1}, {1, -1, -1}}},
    {4, {{0, 4, 0}, {-2, 2, -2}, {1, -1, 1}, {1, -1, 1}}},
    {3, {{1, 1, 1}, {-1, -1, 1}, {1, -1, -1}}},
    {3, {{0, -2, -2}, {0, 2, 2}, {1, 1, 1}}},
    {2, {{1, 1, 1}, {1, -1, -1}}},
    {3, {{4, 0, 0}, {2, -2, -2}, {1, -1, -1}}},
    {4, {{-2, 2, 2}, {-1, 1, 1}, {-2, 2, 2}, {1, -1, -1}}},
    {4, {{3, -3, 3}, {0, 2, 2}, {-1, 1, -1}, {-2, 0, 2}}},
    {3, {{0, -4, 0}, {-2, 2, 2}, {-1, 1, 1}}},
    {4, {{-3, -3, 3}, {2, -2, 0}, {0, 2, 2}, {-1, -1, 1}}},
    {3, {{-1, 1, 1}, {-2, 2, 2}, {0, 0, 4}}},
    {3, {{1, 1, 1}, {0, 2, 2}, {0, 2, 2}}},
    {2, {{0, 2, 2}, {0, 2, 2}}},
    {4, {{4, 0, 0}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}}},
    {3, {{1, -1, 1}, {-1, -1, 1}, {1, 1, 1}}},
    {3, {{-2, 0, -2}, {2, 0, 2}, {1, 1, 1}}},
    {2, {{1, 1, 1}, {1, -1, 1}}},
    {3, {{-2, -2, 0}, {2, 2, 0}, {1, 1, 1}}},
    {2, {{1, 1, 1}, {-1, -1, 1}}},
    {2, {{1, 1, 1}, {1, 1, 1}}},
    {1, {{1, 1, 1}}},
    {1, {{1, 1, 1}}},
    {2, {{1, 1, 1}, {1, 1, 1}}},
    {2, {{1, 1, 1}, {-1, -1, 1}}},
    {3, {{-2, -2, 0}, {2, 2, 0}, {1, 1, 1}}},
    {2, {{1, 1, 1}, {1, -1, 1}}},
    {3, {{-2, 0, -2}, {2, 0, 2}, {1, 1, 1}}},
    {3, {{1, -1, 1}, {-1, -1, 1}, {1, 1, 1}}},
    {4, {{4, 0, 0}, {2, 2, 2}, {1, 1, 1}, {1, 1, 1}}},
    {2, {{0, 2, 2}, {0, 2, 2}}},
    {3, {{1, 1, 1}, {0, 2, 2}, {0, 2, 2}}},
    {3, {{-1, 1, 1}, {-2, 2, 2}, {0, 0, 4}}},
    {4, {{-3, -3, 3}, {2, -2, 0}, {0, 2, 2}, {-1, -1, 1}}},
    {3, {{0, -4, 0}, {-2, 2, 2}, {-1, 1, 1}}},
    {4, {{3, -3, 3}, {0, 2, 2}, {-1, 1, -1}, {-2, 0, 2}}},
    {4, {{-2, 2, 2}, {-1, 1, 1}, {-2, 2, 2}, {1, -1, -1}}},
    {3, {{4, 0, 0}, {2, -2, -2}, {1, -1, -1}}},
    {2, {{1, 1, 1}, {1, -1, -1}}},
    {3, {{0, -2, -2}, {0, 2, 2}, {1, 1, 1}}},
    {3, {{1, 1, 1}, {-1, -1, 1}, {1, -1, -1}}},
    {4, {{0, 4, 0}, {-2, 2, -2}, {1, -1, 1}, {1, -1, 1}}},
    {3, {{1, 1, 1}, {1, -1, 1}, {1, -1, -1}}},
    {4, {{0, 0, 4}, {-2, -2, 2}, {-1, -1, 1}, {-1, -1, 1}}},
    {4, {{-1, 1, 1}, {1, -1, 1}, {-1, -1, 1}, {1, 1, 1}}},
    {3, {{-1, 1, 1}, {1, -1, 1}, {-1, -1, 1}}},
    {3, {{0, 2, 2}, {0, 2, 2}, {1, -1, -1}}},
    {4, {{0, -2, -2}, {0, 2, 2}, {0, 2, 2}, {0, 2, 2}}},
    {4, {{0, 0, 4}, {2, -2, 2}, {1, -1, 1}, {1, -1, 1}}},
    {3, {{0, -2, 2}, {0, -2, 2}, {1, -1, 1}}},
    {4, {{0, -4, 0}, {1, 1, -1}, {2, 2, -2}, {-1, -1, 1}}},
    {3, {{-1, -1, 1}, {0, -2, 2}, {0, 2, -2}}},
    {3, {{1, 1, 1}, {-1, -1, 1}, {1, -1, 1}}},
    {2, {{-1, -1, 1}, {1, -1, 1}}},
    {2, {{2, 0, 2}, {2, 0, 2}}},
    {3, {{1, 1, 1}, {2, 0, 2}, {2, 0, 2}}},
    {3, {{0, 0, 4}, {2, -2, 2}, {1, -1, 1}}},
    {4, {{2, 0, 2}, {-3, -3, 3}, {-2, 2, 0}, {-1, -1, 1}}},
    {3, {{1, -1, 1}, {2, 0, 2}, {2, 0, 2}}},
    {4, {{-2, 0, -2}, {2, 0, 2}, {2, 0, 2}, {2, 0, 2}}},
    {4, {{0, 0, 4}, {2, -2, 2}, {1, -1, 1}, {1, -1, 1}}},
    {3, {{-2, 0, 2}, {2, 0, -2}, {-1, 1, 1}}},
    {3, {{1, 1, 1}, {2, 2, 2}, {0, 0, 4}}},
    {4, {{1, 1, 1}, {1, 1, 1}, {2, 2, 2}, {0, 0, 4}}},
    {2, {{0, 0, 4}, {0, 0, 4}}},
    {3, {{0, 0, -4}, {2, 2, -2}, {-1, -1, 1}}},
    {4, {{-2, 0, -2}, {-3, 3, 3}, {-2, -2, 0}, {-1, 1, 1}}},
    {3, {{-1, -1, 1}, {-2, 0, 2}, {2, 0, -2}}},
    {3, {{0, 0, 4}, {-2, 2, 2}, {-1, 1, 1}}},
    {2, {{-2, 0, 2}, {2, 0, -2}}},
    {3, {{4, 0, 0}, {-2, 2, -2}, {1, -1, 1}}},
    {4, {{-2, 0, -2}, {3, -3, -3}, {0, 2, -2}, {-1, 1, 1}}},
    {4, {{-2, 2, -2}, {-2, 2, -2}, {-1, 1, -1}, {-1, 1, -1}}},
    {3, {{0, 4, 0}, {-2, 2, -2}, {1, -1, 1}}},
    {4, {{4, 0, 0}, {-2, -2, 2}, {-1, -1, 1}, {-1, -1, 1}}},
    {3, {{-1, -1, 1}, {-2, 0, 2}, {-2, 0, 2}}},
    {3, {{1, 1, 1}, {-1, -1, 1}, {-1, 1, 1}}},
    {2, {{-1, -1, 1}, {-1, 1, 1}}},
    {4, {{3, -3, 3}, {0, -2, -2}, {-1, 1, -1}, {2, 2, 0}}},
    {3, {{0, -2, 2}, {0, -2, 2}, {-1, -1, 1}}},
    {3, {{0, 0, 4}, {2, -2, 2}, {1, -1, 1}}},
    {2, {{0, -2, 2}, {0, -2, 2}}},
    {3, {{-1, -1, 1}, {-2, -2, 0}, {2, 2, 0}}},
    {2, {{-1, -1, 1}, {-1, -1, 1}}},
    {2, {{1, 1, 1}, {-1, -1, 1}}},
    {1, {{-1, -1, 1}}},
    {2, {{-2, -2, 0}, {-2, -2, 0}}},
    {3, {{1, 1, 1}, {-2, -2, 0}, {-2, -2, 0}}},
    {3, {{-2, -2, 0}, {-2, -2, 0}, {-1, -1, 1}}},
    {4, {{-2, -2, 0}, {-2, -2, 0}, {-2, -2, 0}, {2, 2, 0}}},
    {3, {{0, 4, 0}, {2, 2, -2}, {-1, -1, 1}}},
    {4, {{-3, 3, -3}, {-2, -2, 0}, {-1, 1, -1}, {-2, 0, 2}}},
    {4, {{0, 4, 0}, {2, 2, -2}, {-1, -1, 1}, {-1, -1, 1}}},
    {3, {{-1, 1, 1}, {2, -2, 0}, {-2, 2, 0}}},
    {3, {{0, -4, 0}, {-2, -2, -2}, {-1, -1, -1}}},
    {4, {{1, 1, 1}, {0, -4, 0}, {-2, -2, -2}, {-1, -1, -1}}},
    {4, {{-3, -3, -3}, {-2, 0, 2}, {-1, -1, -1}, {-2, 2, 0}}},
    {3, {{2, -2, 0}, {-2, 2, 0}, {1, -1, 1}}},
    {2, {{0, 4, 0}, {0, -4, 0}}},
    {3, {{0, 4, 0}, {1, -1, 1}, {-2, 2, -2}}},
    {3, {{0, 4, 0}, {-2, 2, 2}, {1, -1, -1}}},
    {2, {{2, -2, 0}, {-2, 2, 0}}},
    {3, {{-4, 0, 0}, {-2, -2, 2}, {-1, -1, 1}}},
    {4, {{0, 2, -2}, {3, -3, -3}, {-1, 1, 1}, {2, 2, 0}}},
    {4, {{4, 0, 0}, {2, -2, 2}, {-1, 1, -1}, {1, -1, 1}}},
    {3, {{1, -1, 1}, {2, -2, 0}, {2, -2, 0}}},
    {4, {{2, 2, -2}, {2, 2, -2}, {1, 1, -1}, {-1, -1, 1}}},
    {3, {{0, 0, 4}, {-2, -2, 2}, {-1, -1, 1}}},
    {3, {{1, 1, 1}, {1, -1, 1}, {-1, 1, 1}}},
    {2, {{-1, 1, 1}, {1, -1, 1}}},
    {4, {{-3, -3, 3}, {0, 2, 2}, {1, 1, -1}, {-2, 0, -2}}},
    {3, {{0, -2, 2}, {0, 2, -2}, {1, -1, 1}}},
    {3, {{1, -1, 1}, {-2, 0, -2}, {2, 0, 2}}},
    {2, {{1, -1, 1}, {1, -1, 1}}},
    {3, {{0, -4, 0}, {1, 1, -1}, {2, 2, -2}}},
    {2, {{0, -2, 2}, {0, 2, -2}}},
    {2, {{1, 1, 1}, {1, -1, 1}}},
    {1, {{1, -1, 1}}},
    {3, {{-4, 0, 0}, {-1, -1, -1}, {-2, -2, -2}}},
    {4, {{-4, 0, 0}, {-1, -1, -1}, {-2, -2, -2}, {1, 1, 1}}},
    {4, {{3, 3, 3}, {0, 2, -2}, {-1, -1, -1}, {-2, 2, 0}}},
    {3, {{1, -1, -1}, {2, -2, 0}, {2, -2, 0}}},
    {4, {{1, 1, 1}, {3, 3, 3}, {0, -2, 2}, {-2, 0, 2}}},
    {3, {{-2, 0, 2}, {-2, 0, 2}, {1, -1, -1}}},
    {3, {{0, -2, -2}, {0, 2, 2}, {-1, 1, 1}}},
    {2, {{-1, 1, 1}, {1, -1, -1}}},
    {4, {{-1, -1, -1}, {-2, -2, -2}, {2, 2, 2}, {1, 1, 1}}},
    {3, {{-1, -1, 1}, {1, -1, 1}, {1, -1, -1}}},
    {3, {{0, 0, -4}, {2, 2, 2}, {-1, -1, -1}}},
    {2, {{1, -1, 1}, {1, -1, -1}}},
    {3, {{0, -4, 0}, {2, 2, 2}, {1, 1, 1}}},
    {2, {{-1, -1, 1}, {1, -1, -1}}},
    {2, {{0, -2, -2}, {0, 2, 2}}},
    {1, {{1, -1, -1}}},
    {2, {{4, 0, 0}, {4, 0, 0}}},
    {3, {{-4, 0, 0}, {-2, 2, 2}, {-1, 1, 1}}},
    {3, {{4, 0, 0}, {2, -2, 2}, {-1, 1, -1}}},
    {2, {{2, -2, 0}, {2, -2, 0}}},
    {3, {{4, 0, 0}, {-2, -2, 2}, {-1, -1, 1}}},
    {2, {{-2, 0, 2}, {-2, 0, 2}}},
    {2, {{1, 1, 1}, {-1, 1, 1}}},
    {1, {{-1, 1, 1}}},
    {3, {{4, 0, 0}, {2, 2, 2}, {1, 1, 1}}},
    {2, {{1, -1, 1}, {-1, -1, 1}}},
    {2, {{-2, 0, -2}, {2, 0, 2}}},
    {1, {{1, -1, 1}}},
    {2, {{-2, -2, 0}, {2, 2, 0}}},
    {1, {{-1, -1, 1}}},
    {1, {{1, 1, 1}}},
    {1, {{0, 0, 0}}},
}};
// clang-format on

// The surface-element area of each neighbour code at voxel spacing (x, y, z) mm.
inline std::array<double, 256> surface_element_areas(const Spacing& spacing) {
  std::array<double, 256> areas{};
  for (std::size_t code = 0; code < 256; ++code) {
    const SurfaceNormals& entry = kSurfaceNormals[code];
    double sum = 0.0;
    for (int k = 0; k < entry.count; ++k) {
      const int* n = entry.normals[k];
      const double x = n[0] / 8.0 * spacing[1] * spacing[2];
      const double y = n[1] / 8.0 * spacing[0] * spacing[2];
      const double z = n[2] / 8.0 * spacing[0] * spacing[1];
      sum += std::sqrt(x * x + y * y + z * z);
    }
    areas[code] = sum;
  }
  return areas;
}

// Neighbour codes on the corner grid (D + 1, H + 1, W + 1) of a (D, H, W) mask.
inline std::vector<std::uint8_t> neighbour_codes(const std::uint8_t* mask, index_t depth,
                                                 index_t height, index_t width) {
  const index_t cd = depth + 1, ch = height + 1, cw = width + 1;
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(cd * ch * cw), 0);
  for (index_t d = 0; d < cd; ++d) {
    for (index_t h = 0; h < ch; ++h) {
      for (index_t w = 0; w < cw; ++w) {
        unsigned code = 0;
        for (index_t oz = 0; oz < 2; ++oz) {
          for (index_t oy = 0; oy < 2; ++oy) {
            for (index_t ox = 0; ox < 2; ++ox) {
              const index_t vd = d + oz - 1, vh = h + oy - 1, vw = w + ox - 1;
              if (vd < 0 || vd >= depth || vh < 0 || vh >= height || vw < 0 || vw >= width) {
                continue;
              }
              if (mask[(vd * height + vh) * width + vw] != 0) {
                code |= 1u << (7 - (4 * ox + 2 * oy + oz));
              }
            }
          }
        }
        codes[static_cast<std::size_t>((d * ch + h) * cw + w)] = static_cast<std::uint8_t>(code);
      }
    }
  }
  return codes;
}

// The area-weighted percentile of compute_robust_hausdorff: distances sorted, the first whose
// cumulative area / total area >= q / 100.
inline double area_weighted_percentile(std::vector<std::pair<double, double>> distance_area,
                                       double q) {
  std::sort(distance_area.begin(), distance_area.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  double total = 0.0;
  for (const auto& [distance, area] : distance_area) total += area;
  double cumulative = 0.0;
  for (const auto& [distance, area] : distance_area) {
    cumulative += area;
    if (cumulative / total >= q / 100.0) return distance;
  }
  return distance_area.back().first;
}

}  // namespace detail

// HD95 (mm) on surface elements (see the top of this file) of two masks of shape
// (1, 1, D, H, W); both must be non-empty.
inline double surface_element_hd95(const std::uint8_t* pred, const std::uint8_t* truth,
                                   Shape5 shape, const Spacing& spacing) {
  detail::check_volume("surface_element_hd95", shape);
  detail::check_spacing("surface_element_hd95", spacing);
  // Bounding box of pred OR truth.
  std::array<index_t, 3> begin = {shape.d, shape.h, shape.w}, end = {0, 0, 0};
  for (index_t d = 0; d < shape.d; ++d) {
    for (index_t h = 0; h < shape.h; ++h) {
      for (index_t w = 0; w < shape.w; ++w) {
        const index_t i = (d * shape.h + h) * shape.w + w;
        if ((pred[i] | truth[i]) == 0) continue;
        begin = {std::min(begin[0], d), std::min(begin[1], h), std::min(begin[2], w)};
        end = {std::max(end[0], d + 1), std::max(end[1], h + 1), std::max(end[2], w + 1)};
      }
    }
  }
  REVOX_CHECK(begin[0] < end[0], "surface_element_hd95: both masks are empty");
  const index_t depth = end[0] - begin[0], height = end[1] - begin[1], width = end[2] - begin[2];
  std::vector<std::uint8_t> pred_box(static_cast<std::size_t>(depth * height * width));
  std::vector<std::uint8_t> truth_box(pred_box.size());
  for (index_t d = 0; d < depth; ++d) {
    for (index_t h = 0; h < height; ++h) {
      for (index_t w = 0; w < width; ++w) {
        const index_t i = ((begin[0] + d) * shape.h + begin[1] + h) * shape.w + begin[2] + w;
        const auto k = static_cast<std::size_t>((d * height + h) * width + w);
        pred_box[k] = pred[i] != 0 ? 1 : 0;
        truth_box[k] = truth[i] != 0 ? 1 : 0;
      }
    }
  }
  const std::vector<std::uint8_t> pred_codes =
      detail::neighbour_codes(pred_box.data(), depth, height, width);
  const std::vector<std::uint8_t> truth_codes =
      detail::neighbour_codes(truth_box.data(), depth, height, width);
  auto border = [](const std::vector<std::uint8_t>& codes) {
    std::vector<std::uint8_t> out(codes.size());
    for (std::size_t i = 0; i < codes.size(); ++i) out[i] = (codes[i] != 0 && codes[i] != 255);
    return out;
  };
  const std::vector<std::uint8_t> pred_border = border(pred_codes);
  const std::vector<std::uint8_t> truth_border = border(truth_codes);
  REVOX_CHECK(std::find(pred_border.begin(), pred_border.end(), 1) != pred_border.end() &&
                  std::find(truth_border.begin(), truth_border.end(), 1) != truth_border.end(),
              "surface_element_hd95: both masks must be non-empty");
  const Shape5 corners{1, 1, depth + 1, height + 1, width + 1};
  const std::array<double, 256> areas = detail::surface_element_areas(spacing);
  std::vector<double> squared(static_cast<std::size_t>(corners.spatial()));
  auto directed = [&](const std::vector<std::uint8_t>& from_border,
                      const std::vector<std::uint8_t>& from_codes,
                      const std::vector<std::uint8_t>& to_border) {
    squared_distance_transform(to_border.data(), corners, spacing, squared.data());
    std::vector<std::pair<double, double>> distance_area;
    for (std::size_t i = 0; i < from_border.size(); ++i) {
      if (from_border[i] != 0) distance_area.emplace_back(std::sqrt(squared[i]), areas[from_codes[i]]);
    }
    return detail::area_weighted_percentile(std::move(distance_area), 95.0);
  };
  return std::max(directed(truth_border, truth_codes, pred_border),
                  directed(pred_border, pred_codes, truth_border));
}

}  // namespace revox::metrics
