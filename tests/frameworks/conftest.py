"""Fixtures of the framework tests."""
import pytest

import gpuconv


@pytest.fixture(params=[False, True], ids=["reference", "simulator"])
def executor(request):
    """Runs the test through the NumPy reference, then under gpuconv.simulate()."""
    if request.param:
        with gpuconv.simulate():
            yield
    else:
        yield


@pytest.fixture
def cuda_torch_without_tf32():
    """Skips without a CUDA build of torch; turns TF32 off for the test (torch's float32
    convolutions would otherwise run in TF32 and differ from gpuconv's by ~1e-3)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("this torch build has no CUDA device")
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
