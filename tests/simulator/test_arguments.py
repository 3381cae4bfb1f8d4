"""Launch arguments are checked against the kernel's C++ parameter types (CuPy does not)."""
import numpy as np
import pytest

from sim_support import MEMORY_KERNELS, load

SCALARS = (np.int8(-3), np.int16(-300), np.int32(-70000), np.int64(-2**40), np.uint8(200),
           np.uint16(60000), np.uint32(4_000_000_000), np.uint64(2**60), np.float32(1.5),
           np.float64(-2.25), np.bool_(True))


@pytest.fixture(scope="module")
def memory():
    return load("memory.cu", MEMORY_KERNELS)


def test_every_scalar_kind_arrives_intact(memory):
    out = np.zeros(11)
    memory.get_function("scalars")(1, 1, (out, *SCALARS))
    np.testing.assert_array_equal(out, [float(v) for v in SCALARS])


def test_parameter_types_are_reported(memory):
    params = memory.get_function("scalars").params
    assert [p.type_name for p in params] == [
        "double*", "signed char", "short int", "int", "long long int", "unsigned char",
        "short unsigned int", "unsigned int", "long long unsigned int", "float", "double", "bool"]


@pytest.mark.parametrize("position,value,words", [
    (3, np.int64(1), ["argument 3", "'int'", "4-byte signed integer", "numpy.int64"]),
    (3, np.uint32(1), ["argument 3", "'int'", "numpy.uint32", "4-byte unsigned integer"]),
    (9, np.float64(1), ["argument 9", "'float'", "numpy.float64"]),
    (10, np.float32(1), ["argument 10", "'double'", "numpy.float32"]),
    (11, np.int8(1), ["argument 11", "'bool'", "numpy.int8"]),
    (4, 5, ["argument 4", "Python int", "np.int64(5)"]),
    (9, 1.5, ["argument 9", "Python float", "np.float32(1.5)"]),
    (2, np.zeros(1, np.int16), ["argument 2", "a scalar", "numpy.ndarray"]),
    (0, np.float64(0), ["argument 0", "'double*'", "numpy.ndarray (or None"]),
    (0, np.zeros(11, np.float32), ["argument 0", "'double*'", "float32"]),
])
def test_mismatched_argument_is_a_type_error_naming_both_types(memory, position, value, words):
    args = [np.zeros(11), *SCALARS]
    args[position] = value
    with pytest.raises(TypeError) as caught:
        memory.get_function("scalars")(1, 1, tuple(args))
    for word in words:
        assert word in str(caught.value)


def test_wrong_argument_count_is_a_type_error(memory):
    with pytest.raises(TypeError, match="takes 2 arguments.*got 1"):
        memory.get_function("maybe_null")(1, 1, (np.zeros(1, np.int32),))


def test_void_and_struct_pointees_are_not_checked_but_contiguity_is(memory):
    flag = np.zeros(1, np.int32)
    with pytest.raises(ValueError, match="contiguous"):
        memory.get_function("maybe_null")(1, 1, (flag, np.zeros((4, 4), np.float32)[:, 1]))


def test_a_pointer_off_its_element_alignment_is_a_value_error(memory):
    # a CUDA store of a double at an address that is not a multiple of 8 faults: the executor
    # refuses what the device would trap (the launchers copy such NumPy arrays first)
    raw = np.zeros(11 * 8 + 16, np.uint8)
    start = (-raw.ctypes.data) % 8 + 4
    out = raw[start:start + 11 * 8].view(np.float64)
    with pytest.raises(ValueError, match="argument 0.*not aligned to 8 bytes"):
        memory.get_function("scalars")(1, 1, (out, *SCALARS))


def test_a_vector_pointer_needs_the_vector_s_alignment_not_the_array_s(memory):
    # float32 data handed to a float2* parameter: 4-byte aligned is not enough on a GPU
    raw = np.zeros(4 * 8 + 16, np.uint8)
    start = (-raw.ctypes.data) % 8 + 4
    pairs = raw[start:start + 4 * 8].view(np.float32)
    out = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"argument 1.*not aligned to 8 bytes.*'const float2\*'"):
        memory.get_function("pair_sums")(1, 4, (out, pairs))
    aligned = np.arange(8, dtype=np.float32)
    memory.get_function("pair_sums")(1, 4, (out, aligned))
    np.testing.assert_array_equal(out, aligned[0::2] + aligned[1::2])


@pytest.mark.parametrize("grid,block,error", [
    (0, 32, "grid\\[0\\] must be in \\[1, 2147483647\\]"),
    (1, (32, 32, 2), "2048 threads"),
    (1, (1, 1, 65), "block\\[2\\] must be in \\[1, 64\\]"),
    ((1, 70000), 32, "grid\\[1\\]"),
    ((1, 2, 3, 4), 32, "tuple of 1 to 3 ints"),
    (1.0, 32, "grid must be an int"),
])
def test_launch_geometry_is_checked(memory, grid, block, error):
    with pytest.raises((ValueError, TypeError), match=error):
        memory.get_function("maybe_null")(grid, block, (np.zeros(1, np.int32), None))


def test_shared_mem_must_be_a_non_negative_int(memory):
    kernel = memory.get_function("maybe_null")
    with pytest.raises(ValueError, match="shared_mem must be >= 0"):
        kernel(1, 1, (np.zeros(1, np.int32), None), shared_mem=-1)
    with pytest.raises(TypeError, match="shared_mem must be an int"):
        kernel(1, 1, (np.zeros(1, np.int32), None), shared_mem=1.0)
