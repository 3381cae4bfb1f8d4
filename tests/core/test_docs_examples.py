"""The Python examples of README.md and docs/frameworks.md run as written.

Each code block is executed (CuPy lines only where CuPy and a GPU are there) in a namespace
holding the few names the prose leaves to the reader (x, w, feat, boxes, model, ...), small
enough for the reference and the simulator. A renamed function, argument or default in the
package then fails here instead of in a reader's first session.
"""
import pathlib
import re

import numpy as np
import pytest

import gpuconv

ROOT = pathlib.Path(__file__).resolve().parents[2]


def python_blocks(name: str) -> list[str]:
    text = (ROOT / name).read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def cupy_with_gpu() -> bool:
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, or no driver
        return False


def test_documents_hold_the_blocks_these_tests_expect():
    # One block per topic; a new block needs its namespace below.
    assert len(python_blocks("README.md")) == 2
    assert len(python_blocks("docs/frameworks.md")) == 4


def test_readme_api_at_a_glance():
    code = python_blocks("README.md")[0]
    numpy_part, cupy_part = code.split("import cupy as cp")
    namespace = {}
    exec(compile(numpy_part, "README.md", "exec"), namespace)
    y, dx, dw = namespace["y"], namespace["dx"], namespace["dw"]
    assert y.shape == (8, 128, 56, 56) and dx.shape == (8, 64, 56, 56) and dw.shape == (128, 64, 3, 3)
    assert namespace["r"].shape == (1, 128, 7, 7)
    # The simulated call has padding=1, the reference one "same": equal for a 3x3 stride-1 filter.
    np.testing.assert_allclose(namespace["y_sim"], np.maximum(y[:1], 0), rtol=1e-4, atol=1e-3)
    if cupy_with_gpu():
        exec(compile("import cupy as cp" + cupy_part, "README.md", "exec"), namespace)
        np.testing.assert_allclose(namespace["y_gpu"].get(), namespace["y_sim"], rtol=1e-4, atol=1e-3)


def small_model(torch):
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 2))


def test_readme_frameworks():
    torch = pytest.importorskip("torch")
    code = python_blocks("README.md")[1]
    torch_part, jax_part = code.split("import jax, gpuconv.jax as gj")
    namespace = dict(torch=torch, x=torch.randn(2, 64, 10, 10), w=torch.randn(128, 64, 3, 3),
                     b=torch.randn(128), feat=torch.randn(1, 8, 64, 64),
                     boxes=torch.tensor([[0.0, 16, 16, 600, 500]]), model=small_model(torch))
    exec(compile(torch_part, "README.md", "exec"), namespace)
    assert namespace["y"].shape == (2, 128, 10, 10)
    assert namespace["r"].shape == (1, 8, 7, 7)
    assert "swapped" in str(namespace["report"]).lower()

    pytest.importorskip("jax")
    import jax.numpy as jnp
    rng = np.random.default_rng(0)
    namespace = dict(x=jnp.asarray(rng.random((1, 3, 6, 6), np.float32)),
                     w=jnp.asarray(rng.random((4, 3, 3, 3), np.float32)))
    exec(compile("import jax, gpuconv.jax as gj" + jax_part, "README.md", "exec"), namespace)
    assert namespace["g"].shape == (1, 3, 6, 6)


def test_frameworks_torch_functions_and_extras():
    torch = pytest.importorskip("torch")
    functions, extras = python_blocks("docs/frameworks.md")[:2]
    namespace = dict(x=torch.randn(2, 8, 11, 11), w=torch.randn(8, 2, 3, 3), b=torch.randn(8),
                     feat=torch.randn(1, 4, 40, 40), boxes=torch.tensor([[0.0, 8, 8, 400, 300]]))
    exec(compile(functions, "docs/frameworks.md", "exec"), namespace)
    assert namespace["y"].shape == (2, 8, 4, 4) and namespace["out"].shape == (1, 4, 7, 7)

    x, w = torch.randn(2, 8, 11, 11), torch.randn(6, 8, 3, 3)
    namespace = dict(F=namespace["F"], x=x, w=w, b=torch.randn(6), skip=torch.randn(2, 6, 11, 11))
    exec(compile(extras, "docs/frameworks.md", "exec"), namespace)
    assert namespace["y"].shape == (2, 6, 6, 6)  # the last conv2d: stride 2, "same"
    assert namespace["v"].shape == (2, 8 * 21) and namespace["g"].shape == (2, 8, 1, 1)


def test_frameworks_modules_and_convert():
    torch = pytest.importorskip("torch")
    block = python_blocks("docs/frameworks.md")[2]
    namespace = dict(torch_conv=torch.nn.Conv2d(64, 128, 3, padding=1), model=small_model(torch))
    exec(compile(block, "docs/frameworks.md", "exec"), namespace)
    conv, torch_conv = namespace["conv"], namespace["torch_conv"]
    assert torch.equal(conv.weight, torch_conv.weight) and torch.equal(conv.bias, torch_conv.bias)


def test_frameworks_jax():
    pytest.importorskip("jax")
    import jax
    import jax.numpy as jnp
    rng = np.random.default_rng(1)
    namespace = dict(jax=jax, x=jnp.asarray(rng.random((1, 5, 5, 3), np.float32)),
                     w=jnp.asarray(rng.random((4, 3, 3, 3), np.float32)),
                     b=jnp.asarray(rng.random(4, np.float32)))
    block = python_blocks("docs/frameworks.md")[3]
    # The block's first call is channels-last; its gradient lines use NCHW as the default.
    nhwc, gradients = block.split("loss = ")
    exec(compile(nhwc, "docs/frameworks.md", "exec"), namespace)
    assert namespace["y"].shape == (1, 3, 3, 4)
    namespace["x"] = jnp.asarray(rng.random((1, 3, 6, 6), np.float32))
    exec(compile("loss = " + gradients, "docs/frameworks.md", "exec"), namespace)
    assert namespace["g"].shape == (1, 3, 6, 6)
