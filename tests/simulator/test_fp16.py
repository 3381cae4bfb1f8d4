"""__half and __nv_bfloat16: round-to-nearest-even conversions and half arithmetic, bit for bit
against NumPy's float16 (and ml_dtypes' bfloat16 where installed)."""
import numpy as np
import pytest

# Values beyond float16's range are part of the cases: NumPy warns when it rounds them to inf.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

from sim_support import load

NAMES = ["float_to_half", "double_to_half", "float_to_bf16", "half_arithmetic",
         "round_trip<__half>", "round_trip<__nv_bfloat16>", "round_trip<float>", "half_to_int"]


@pytest.fixture(scope="module")
def fp16():
    return load("fp16.cu", NAMES)


def half_ties() -> np.ndarray:
    """Values exactly halfway between neighbouring float16 values (float32 holds them exactly)."""
    codes = np.arange(0, 0x7BFF, 7, dtype=np.uint16)
    low = codes.view(np.float16).astype(np.float32)
    high = (codes + 1).view(np.float16).astype(np.float32)
    return (low + high) / 2


def tricky_floats(rng):
    """Random magnitudes over the whole range plus exact ties, subnormals and overflow edges."""
    half = np.arange(0, 0x7C00, 7, dtype=np.uint16).view(np.float16).astype(np.float32)
    ties = half_ties()
    spread = rng.standard_normal(3000).astype(np.float32) * np.float32(2.0) ** rng.integers(
        -30, 20, 3000).astype(np.float32)
    edges = np.array([0.0, -0.0, 65504, 65519.996, 65520, 1e9, 6e-8, 2.9e-8, 3e-8, 1e-12,
                      np.inf, -np.inf], np.float32)
    values = np.concatenate([half, ties, np.nextafter(ties, np.float32(np.inf)), spread, edges])
    return np.concatenate([values, -values])


def run(kernel, outs, *inputs):
    n = len(inputs[0])
    kernel((n + 127) // 128, 128, (*outs, *inputs, np.int32(n)))


def test_float_to_half_rounds_to_nearest_even(fp16, rng):
    x = tricky_floats(rng)
    bits = np.zeros(x.size, np.uint16)
    back = np.zeros(x.size, np.float32)
    run(fp16.get_function("float_to_half"), (bits, back), x)
    np.testing.assert_array_equal(bits, x.astype(np.float16).view(np.uint16))
    np.testing.assert_array_equal(back, x.astype(np.float16).astype(np.float32))


def test_nan_converts_to_nan(fp16):
    x = np.array([np.nan, -np.nan], np.float32)
    bits = np.zeros(2, np.uint16)
    back = np.zeros(2, np.float32)
    run(fp16.get_function("float_to_half"), (bits, back), x)
    assert np.isnan(bits.view(np.float16)).all() and np.isnan(back).all()


def test_double_to_half_rounds_once(fp16, rng):
    # Doubles just above a float16 tie: rounding through float32 first would land on the tie
    # and then round to even, down for half of them.
    ties = half_ties().astype(np.float64)
    x = np.concatenate([ties, ties + ties * 2.0**-40, rng.standard_normal(500) * 100])
    bits = np.zeros(x.size, np.uint16)
    run(fp16.get_function("double_to_half"), (bits,), x)
    np.testing.assert_array_equal(bits, x.astype(np.float16).view(np.uint16))


def bf16_bits_model(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, round to nearest even (NaN aside): the usual bit formula."""
    u = x.view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def test_float_to_bfloat16_rounds_to_nearest_even(fp16, rng):
    x = tricky_floats(rng)
    ties = (np.arange(0, 0x7F80, 13, dtype=np.uint32) << 16 | 0x8000).view(np.float32)
    x = np.concatenate([x, ties])
    x = x[np.abs(x) < 3.3e38]                   # the bit formula overflows to inf differently
    bits = np.zeros(x.size, np.uint16)
    back = np.zeros(x.size, np.float32)
    run(fp16.get_function("float_to_bf16"), (bits, back), x)
    np.testing.assert_array_equal(bits, bf16_bits_model(x))
    np.testing.assert_array_equal(back, (bits.astype(np.uint32) << 16).view(np.float32))


def test_float_to_bfloat16_matches_ml_dtypes(fp16, rng):
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes is not installed")
    x = tricky_floats(rng)
    bits = np.zeros(x.size, np.uint16)
    run(fp16.get_function("float_to_bf16"), (bits, np.zeros(x.size, np.float32)), x)
    np.testing.assert_array_equal(bits, x.astype(ml_dtypes.bfloat16).view(np.uint16))


def test_half_arithmetic_matches_numpy_float16(fp16, rng):
    a = (rng.standard_normal(2000) * 50).astype(np.float16)
    b = (rng.standard_normal(2000) * 3).astype(np.float16)
    b[b == 0] = 1
    out = np.zeros(3 * a.size, np.float16)
    run(fp16.get_function("half_arithmetic"), (out,), a, b)
    out = out.reshape(-1, 3)
    np.testing.assert_array_equal(out[:, 0], a + b)
    np.testing.assert_array_equal(out[:, 1], a * b)
    np.testing.assert_array_equal(out[:, 2], a / b)


def test_dtypes_cuh_helpers_compile_and_round(fp16, rng):
    x = rng.standard_normal(300).astype(np.float32)
    scale = np.float32(1.37)
    out = np.zeros(300, np.float16)
    run(fp16.get_function("round_trip<__half>"), (out,), x.astype(np.float16), scale)
    expected = (x.astype(np.float16).astype(np.float32) * scale).astype(np.float16)
    np.testing.assert_array_equal(out, expected)
    out32 = np.zeros(300, np.float32)
    run(fp16.get_function("round_trip<float>"), (out32,), x, scale)
    np.testing.assert_array_equal(out32, x * scale)


def test_half_to_integer_conversions_saturate_and_send_nan_to_zero(fp16):
    # PTX cvt.rzi/rni from f16: +-inf saturate to the integer type's limits, NaN gives 0,
    # negative values give 0 as unsigned (x86's cast of the float gave INT_MIN / 0 for inf).
    h = np.array([1.5, -1.5, 2.5, -2.7, np.inf, -np.inf, np.nan, 65504, -65504], np.float16)
    n = h.size
    rz, rn, brz = (np.zeros(n, np.int32) for _ in range(3))
    urz, llrz = np.zeros(n, np.uint32), np.zeros(n, np.int64)
    fp16.get_function("half_to_int")(1, 32, (rz, rn, urz, llrz, brz, h.view(np.uint16), np.int32(n)))
    big, small = np.iinfo(np.int32).max, np.iinfo(np.int32).min
    np.testing.assert_array_equal(rz, [1, -1, 2, -2, big, small, 0, 65504, -65504])
    np.testing.assert_array_equal(rn, [2, -2, 2, -3, big, small, 0, 65504, -65504])
    np.testing.assert_array_equal(urz, [1, 0, 2, 0, np.iinfo(np.uint32).max, 0, 0, 65504, 0])
    np.testing.assert_array_equal(llrz, [1, -1, 2, -2, np.iinfo(np.int64).max,
                                         np.iinfo(np.int64).min, 0, 65504, -65504])
    np.testing.assert_array_equal(brz, [1, -1, 2, -2, big, small, 0, 65536, -65536])
