// Validation of the rois a region-of-interest call is handed, on the device: the first row the
// kernels must not see (api.md: a batch index outside [0, N) is a ValueError; geometry.py's
// module docstring: finite coordinates within +-2**24 feature-map pixels), so that the front
// reads back 4 bytes instead of copying every box to the host (~175 us of host time per call on
// an H100 for 1000 boxes). The row is then described on the host (gpuconv/roi/geometry.py).
//
// The kernel also writes the copy of the rois that the ROI kernels then read, with every bad row
// replaced by an empty box in no image ([-1, 0, 0, 0, 0]: each ROI kernel skips a batch index
// outside [0, N)). So the front may launch its kernels before it reads the answer back: the
// host's launch work overlaps this check instead of following a synchronization, and no value
// that could drive a kernel out of bounds (NaN, 1e30, an index of -0.5 or N) reaches one.
#include "dtypes.cuh"
#include "pool_window.cuh"

// A row is bad when a value is NaN or infinite, a coordinate times spatial_scale exceeds
// max_coordinate in magnitude, or the batch index (column 0) is not in [0, batch) (a fractional
// one inside is truncated by the ROI kernels' int conversion, as torchvision's).
// Compared in double, as the host rules are. rows_after_first_bad: num_rois minus the smallest
// bad row, 0 if none (atomicMax: the same answer in any thread order; counting from the end lets
// the caller start it at 0 with a memset instead of a fill kernel). checked: (num_rois, 5).
template <class T>
__global__ void rois_check(const T* __restrict__ rois, T* __restrict__ checked,
                           int* __restrict__ rows_after_first_bad, int num_rois, int batch,
                           double spatial_scale, double max_coordinate) {
  for (long long i = gc::grid_first(); i < num_rois; i += gc::grid_stride()) {
    const T* row = rois + i * 5;
    const double index = static_cast<double>(gc::to_acc(row[0]));
    // NaN fails every comparison; an infinite index is not below `batch`.
    bool good = index >= 0.0 && index < static_cast<double>(batch);
    for (int k = 1; k < 5; ++k) {
      const double v = static_cast<double>(gc::to_acc(row[k])) * spatial_scale;
      good = good && v == v && v <= max_coordinate && v >= -max_coordinate;
    }
    T* out = checked + i * 5;
    for (int k = 0; k < 5; ++k) {
      out[k] = good ? row[k] : gc::from_acc<T>(k == 0 ? gc::acc_t<T>(-1) : gc::acc_t<T>(0));
    }
    if (!good) atomicMax(rows_after_first_bad, num_rois - (int)i);
  }
}
