// Split-K of the forward GEMMs (implicit GEMM, pointwise): when the output tiles alone are too
// few blocks to fill the GPU (batch 1, 7x7 planes) the k dimension (C/groups * R * S) is cut
// into `splits` ranges of whole k-tiles, one per block along blockIdx.z
// (blockIdx.z = group * splits + split).
//
// With one split the block's accumulators go through the fused epilogue as usual. With several,
// each block writes its raw sums to `partial` (accumulator type, [split][output element] in the
// output's own layout, dense: element (n, k, pq) at n * K*P*Q + k * sK + pq * sPQ with the
// epilogue's channel and pixel strides), and conv2d_split_k_epilogue (kernels/conv/
// split_k_epilogue.cu) adds the splits in index order and applies the epilogue. No atomics:
// the result has the same bits on every run, whatever the schedule.
#pragma once

#include "conv_shape.cuh"
#include "dtypes.cuh"
#include "epilogue.cuh"
#include "simt_gemm.cuh"

// The split-K parameters, after the epilogue's in the GEMM kernels' lists (in the order of
// gpuconv/conv/split_k.py `SplitK.args`): the number of splits and the partial sums (never
// read with one split).
#define GC_SPLIT_K_PARAMS(T) int splits, gc::acc_t<T>* partial

namespace gc {

// A block's place in a split-K grid: its group and its split (blockIdx.z = group * splits +
// split).
struct GemmSlice {
  int group, split;
  __device__ __forceinline__ explicit GemmSlice(int splits)
      : group(blockIdx.z / splits), split(blockIdx.z - (blockIdx.z / splits) * splits) {}
};

// Split `split` of `splits`: an equal share of the k-tiles (the last ones may get fewer, or
// none when splits does not divide them evenly; such a block still writes its zeros).
__device__ __forceinline__ KTileRange split_k_tiles(int gemm_k, int block_k, int split,
                                                    int splits) {
  const KTileRange all = all_k_tiles(gemm_k, block_k);
  const int per_split = (all.end + splits - 1) / splits;
  const int begin = min(split * per_split, all.end);
  return KTileRange{begin, min(begin + per_split, all.end)};
}

// The same share as a range of k itself, [first, first + count) (count may be 0): for kernels
// whose k is a plain index (the pointwise channels), which offset their operands by `first` and
// run the main loop over `count`, keeping no more state live in it than without a split.
struct KSlice {
  int first, count;
};

__device__ __forceinline__ KSlice split_k_slice(int gemm_k, int block_k, int split, int splits) {
  const KTileRange tiles = split_k_tiles(gemm_k, block_k, split, splits);
  const int first = tiles.begin * block_k;
  return KSlice{first, min(tiles.end * block_k, gemm_k) - first};
}

// The second passes' view of the partial sums: element i of the dense (n, channel, pq) grid in
// the output's layout (NHWC: i = (n * PQ + pq) * channels + channel; NCHW: i = (n * channels +
// channel) * PQ + pq), and the sum of its `splits` partial sums in split order.
template <bool NHWC>
__device__ __forceinline__ void split_k_element(int i, int channels, int PQ, int& n,
                                                int& channel, int& pq) {
  if (NHWC) {
    const int m = i / channels;
    channel = i - m * channels;
    n = m / PQ;
    pq = m - n * PQ;
  } else {
    const int nc = i / PQ;
    pq = i - nc * PQ;
    n = nc / channels;
    channel = nc - n * channels;
  }
}

template <class A>
__device__ __forceinline__ A sum_of_splits(const A* partial, int i, int elements, int splits) {
  A total = partial[i];
  for (int s = 1; s < splits; ++s) total += partial[(long long)s * elements + i];
  return total;
}

// Where a split-K GEMM block's finished accumulators go (see the header comment).
template <class T>
struct SplitKOutput {
  Epilogue<T> epi;
  acc_t<T>* partial;
  int splits, split;
  int image_elements;  // K * P * Q: the partial's image stride
  int elements;        // N * K * P * Q: one split's share of the partial

  __device__ __forceinline__ SplitKOutput(const Epilogue<T>& epi_, acc_t<T>* partial_,
                                          int splits_, int split_, const ConvShape& s)
      : epi(epi_), partial(partial_), splits(splits_), split(split_),
        image_elements(s.K * s.P * s.Q), elements(s.N * s.K * s.P * s.Q) {}

  __device__ __forceinline__ void store(int n, int k, int pq, acc_t<T> v) const {
    if (splits == 1) {
      epi.store(n, k, pq, v);
      return;
    }
    // 64-bit: splits * elements (each launch < 2^30 elements) can pass 2^31.
    partial[(long long)split * elements + n * image_elements + k * epi.out_sK + pq * epi.out_sPQ] =
        v;
  }

  // Whether store_vector<L> may run for every k that is a multiple of L within a group of
  // k_per_group channels: the output's (Epilogue::vectors_fit), or the partial sums' (channels
  // contiguous, every stride and the pointer aligned to the L accumulators). Uniform.
  template <int L>
  __device__ __forceinline__ bool vectors_fit(int k_per_group) const {
    if (k_per_group % L != 0) return false;
    if (splits == 1) return epi.template vectors_fit<L>();
    constexpr int E = pack_elements<acc_t<T>, L>();
    return epi.out_sK == 1 && epi.out_sPQ % E == 0 && image_elements % E == 0 &&
           elements % E == 0 &&
           reinterpret_cast<unsigned long long>(partial) % (E * sizeof(acc_t<T>)) == 0;
  }

  // store(n, k + j, pq, v[j]) for j < L, as vectors, where vectors_fit<L>(...) and k % L == 0.
  template <int L>
  __device__ __forceinline__ void store_vector(int n, int k, int pq,
                                               const acc_t<T> (&v)[L]) const {
    if (splits == 1) {
      epi.template store_vector<L>(n, k, pq, v);
      return;
    }
    store_packed<acc_t<T>, L>(
        partial + (long long)split * elements + n * image_elements + k + pq * epi.out_sPQ, v);
  }
};

}  // namespace gc
