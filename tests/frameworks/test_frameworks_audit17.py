"""Audit 17 of the framework fronts (a reading of gpuconv.torch and gpuconv.jax). Fixed and
pinned below:

1. roi_align / roi_pool under torch.autocast refused float32 boxes with a float16 or bfloat16
   feature map. torchvision's autocast kernels (CPU and CUDA) cast the input and the boxes to
   float32 and the result back to the input's dtype; so do gpuconv.torch's now.
2. max_unpool2d under torch's CPU autocast kept the input's half precision; torch's CPU autocast
   runs it in float32 (its float32 list).
3. An unbatched conv2d with a residual that is not a tensor was an AttributeError (the batch
   dimension was added before the checks); conv_transpose2d's output_size as an int or a float
   was "object of type 'int' has no len()". Both are TypeErrors naming the argument.
4. convert() swapped the poolings of a model on a device gpuconv does not take (meta, mps), whose
   convolutions it kept: the poolings have no parameters to show the device, the model has.
5. gpuconv.jax's eager results were committed to their device even where no argument was, unlike
   a jax.numpy result: a convolution's gradient with respect to a committed input (computed from
   the uncommitted weight and cotangent) landed committed on the default device, and the update
   ``x - lr * g`` failed with incompatible devices.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

import gpuconv.torch as gt  # noqa: E402

from torchvision_semantics import roi_align as tv_roi_align  # noqa: E402
from torchvision_semantics import roi_pool as tv_roi_pool  # noqa: E402

BOXES = torch.tensor([[0, 1.0, 1.0, 6.0, 6.5], [1, 0.5, 2.0, 7.0, 5.0]])


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("listed", [False, True], ids=["rois", "list"])
@pytest.mark.parametrize("name", ["roi_align", "roi_pool"])
def test_roi_under_autocast_computes_in_float32_as_torchvision(name, listed, half, executor):
    torch.manual_seed(0)
    features = torch.randn(2, 3, 8, 8).to(half).requires_grad_()
    boxes = [BOXES[:1, 1:], BOXES[1:, 1:]] if listed else BOXES       # float32 proposals
    args = (2, 1.0, 2) if name == "roi_align" else (2, 1.0)
    with torch.autocast("cpu", dtype=half):
        y = getattr(gt, name)(features, boxes, *args)
    reference = tv_roi_align if name == "roi_align" else tv_roi_pool
    expected = reference(features.detach().float(), BOXES, *args).to(half)
    assert y.dtype == half
    torch.testing.assert_close(y, expected, rtol=0, atol=0)
    y.float().sum().backward()
    assert features.grad.dtype == half and features.grad.shape == features.shape


def test_max_unpool2d_under_cpu_autocast_runs_in_float32_as_torch(executor):
    values, indices = F.max_pool2d(torch.randn(1, 2, 6, 6), 2, return_indices=True)
    for half in (torch.bfloat16, torch.float16):
        with torch.autocast("cpu", dtype=half):
            expected = F.max_unpool2d(values.to(half), indices, 2)
            got = gt.max_unpool2d(values.to(half), indices, 2)
            kept = gt.max_unpool2d(values.double(), indices, 2)      # float64 is not cast
        assert got.dtype == expected.dtype == torch.float32
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        assert kept.dtype == torch.float64


def test_an_unbatched_conv2d_names_a_residual_that_is_not_a_tensor():
    with pytest.raises(TypeError, match="^residual must be a torch.Tensor, got ndarray"):
        gt.conv2d(torch.randn(3, 5, 5), torch.randn(2, 3, 3, 3),
                  residual=np.zeros((2, 3, 3), np.float32))


@pytest.mark.parametrize("output_size", [6, 6.0, np.int64(6)])
@pytest.mark.parametrize("batched", [True, False])
def test_conv_transpose2d_names_an_output_size_that_is_not_a_sequence(output_size, batched):
    x = torch.randn(1, 2, 4, 4) if batched else torch.randn(2, 4, 4)
    with pytest.raises(TypeError, match="^output_size must be None or a sequence of 2 or 4 ints"):
        gt.conv_transpose2d(x, torch.randn(2, 3, 3, 3), output_size=output_size)


def test_convert_keeps_the_poolings_of_a_model_on_another_device():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3), torch.nn.MaxPool2d(2),
                                torch.nn.AdaptiveAvgPool2d(1)).to("meta")
    report = gt.convert(model)
    assert not report.swapped
    assert [s.reason for s in report.skipped][1:] == [
        "the model's 0.weight is on a meta device; gpuconv takes CPU and CUDA tensors"] * 2
    y = model(torch.randn(1, 3, 8, 8, device="meta"))       # torch's own layers still run
    assert y.shape == (1, 3, 1, 1)


UNCOMMITTED = """
    import jax, jax.numpy as jnp
    import gpuconv.jax as GJ
    cpu0, cpu1 = jax.devices()
    x, w = jnp.ones((1, 2, 4, 4)), jnp.ones((2, 2, 3, 3))
    z = jax.device_put(jnp.ones((1, 2, 2, 2)), cpu1)
    y = GJ.conv2d(x, w)
    assert not y.committed and (y + z).devices() == {cpu1}
    assert not GJ.max_pool2d(x, 2).committed
    assert GJ.conv2d(jax.device_put(x, cpu1), w).committed
    xc = jax.device_put(x, cpu1)
    for f in (lambda x: GJ.conv2d(x, w).sum(), lambda x: GJ.conv_transpose2d(x, w).sum()):
        g = jax.grad(f)(xc)
        assert (xc - 0.1 * g).devices() == {cpu1}
    print("ok")
"""


def test_jax_results_are_committed_only_where_an_argument_was():
    pytest.importorskip("jax")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(UNCOMMITTED)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]
