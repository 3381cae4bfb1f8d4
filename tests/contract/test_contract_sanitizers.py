"""Every public function's kernels under the simulator's AddressSanitizer and ThreadSanitizer
builds: an out-of-bounds access (global or shared) or a missing barrier in any kernel a public
call launches is reported here, with the CUDA thread and the .cu line (simulator.md)."""
import numpy as np
import pytest

import gpuconv
from gpuconv.simulator import SanitizerUnavailable
from contract_support import CASE_NAMES, case_named, results

pytestmark = pytest.mark.slow   # each sanitizer builds its own copy of every kernel launched


@pytest.mark.parametrize("sanitize", ["address", "thread"])
@pytest.mark.parametrize("name", CASE_NAMES)
def test_public_call_is_clean_under_the_sanitizer(name, sanitize, contract_executor):
    if contract_executor == "reference":
        pytest.skip("runs the kernels only: the simulator parametrization covers it")
    case = case_named(name, np.float32)
    expected = results(case.run())
    try:
        with gpuconv.simulate(order="random", seed=3, sanitize=sanitize):
            got = results(case.run())
    except SanitizerUnavailable as error:
        pytest.skip(str(error))
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)
