"""The force-included runtime header: executor macros, vector types and intrinsics."""
import numpy as np

from sim_support import load


def test_macros_vector_types_and_intrinsics():
    module = load("intrinsics.cu", ["intrinsics"])
    x = np.array([2.5], np.float32)
    out = np.full(20, -9, np.float32)
    module.get_function("intrinsics")(1, 1, (out, x))
    v = np.float32(2.5)
    expected = [
        0,                          # __CUDA_ARCH__ undefined (simulator.md, convention 4)
        1,                          # __SIMT_CPU__ and __CUDACC__ defined
        10 * v,
        np.exp(v),
        1 / np.sqrt(v),
        1 / v,
        v * v + 1,
        1,
        v,
        bin(int(np.array(v).view(np.uint32))).count("1"),
        30,                         # __clz(2)
        3,                          # rint(3.0)
        2 + 3,
        v + 1,
        1,
        v,
        1,                          # __saturatef(1.5)
        1,                          # __brev
        1,                          # __byte_perm
        1,                          # blockDim.x * gridDim.x
    ]
    np.testing.assert_allclose(out, np.array(expected, np.float32), rtol=1e-6)
