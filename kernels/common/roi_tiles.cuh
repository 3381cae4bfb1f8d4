// The tile machinery of the deterministic (gather) ROI backward passes
// (kernels/roi/roi_align_gather.cu, kernels/roi/roi_pool.cu): a block owns a tile of input pixels
// of one image, lists, in increasing roi order, the rois that can touch the tile, and then every
// input element of the tile sums the contributions of the listed rois in that order. The order
// is fixed, so the result is bitwise reproducible without atomics.
#pragma once

#include "flat_index.cuh"  // Coord4

namespace gc {

constexpr int kRoiTileThreads = 256;  // threads per block of the gather kernels
constexpr int kRoiTileWarps = kRoiTileThreads / 32;
constexpr int kRoiTileH = 4;          // pixels per tile: 4 rows x 16 columns
constexpr int kRoiTileW = 16;
// Roi ids kept per pass; a tile touched by more rois takes several passes, each adding to what
// the previous ones wrote (still in increasing roi order).
constexpr int kRoiListCapacity = 512;

// The pixels of one tile: rows [h0, h1), columns [w0, w1) of image n.
struct PixelTile {
  int n, h0, h1, w0, w1;
};

// Block b of a grid (tiles_h * tiles_w, min(N, 65535)) covers tile blockIdx.x of image n.
__device__ __forceinline__ PixelTile pixel_tile(int n, int height, int width) {
  const int tiles_w = (width + kRoiTileW - 1) / kRoiTileW;
  PixelTile t;
  t.n = n;
  t.h0 = (blockIdx.x / tiles_w) * kRoiTileH;
  t.w0 = (blockIdx.x % tiles_w) * kRoiTileW;
  t.h1 = min(t.h0 + kRoiTileH, height);
  t.w1 = min(t.w0 + kRoiTileW, width);
  return t;
}

// Appends the ids of the flagged threads to `list` (starting at list_size) in thread order,
// which is increasing roi order when thread t tested roi first + t. Every thread of the block
// must call it; returns the new size (the same value in every thread). `warp_counts` is a
// kRoiTileWarps shared array.
__device__ __forceinline__ int append_in_order(bool flag, int id, int* list, int list_size,
                                               int* warp_counts) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const unsigned ballot = __ballot_sync(0xffffffffu, flag);
  if (lane == 0) warp_counts[warp] = __popc(ballot);
  __syncthreads();
  int before = list_size;
  int total = list_size;
  for (int w = 0; w < kRoiTileWarps; ++w) {
    if (w < warp) before += warp_counts[w];
    total += warp_counts[w];
  }
  if (flag) list[before + __popc(ballot & ((1u << lane) - 1u))] = id;
  __syncthreads();  // warp_counts is rewritten by the next call; list is read after this
  return total;
}

// Lists, in increasing order, the rois from `scanned` on for which touches(k) holds, until every
// roi is scanned or the list cannot take another round of kRoiTileThreads; returns the list
// size and advances `scanned` past the rois tested. Every thread of the block must call it.
template <class Touches>
__device__ __forceinline__ int list_touching_rois(int& scanned, int num_rois, int* list,
                                                  int* warp_counts, Touches&& touches) {
  int list_size = 0;
  while (scanned < num_rois && list_size + kRoiTileThreads <= kRoiListCapacity) {
    const int k = scanned + threadIdx.x;
    const bool flag = k < num_rois && touches(k);
    list_size = append_in_order(flag, k, list, list_size, warp_counts);
    scanned += kRoiTileThreads;
  }
  return list_size;
}

// Element `item` of a tile's tile_pixels * channels input elements (tile_w pixels a row):
// channels fastest in NHWC, columns fastest in NCHW, so that the items of a warp are
// neighbouring addresses either way.
template <bool kNHWC>
__device__ __forceinline__ Coord4 tile_element(const PixelTile& tile, int item, int channels,
                                               int tile_pixels, int tile_w) {
  const int c = kNHWC ? item % channels : item / tile_pixels;
  const int pixel = kNHWC ? item / channels : item % tile_pixels;
  return Coord4{tile.n, c, tile.h0 + pixel / tile_w, tile.w0 + pixel % tile_w};
}

}  // namespace gc
