// Test family that deliberately fails to compile: the tests check that the error names this
// file and the line of `undeclared_value`.
#include "dtypes.cuh"

template <class T>
__global__ void broken(T* y) {
  y[threadIdx.x] = undeclared_value;
}
