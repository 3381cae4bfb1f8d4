"""Audit 16 of the framework fronts, and the finding audit 15 left open. Fixed and pinned below:

1. max_unpool2d of an unbatched (C, H, W) input quoted the indices' shape with the batch
   dimension gpuconv.torch adds ("must have shape (1, 2, 3, 3), got (1, 2, 3, 4)"), and indices
   that were not a tensor were an AttributeError. The shapes given are quoted, and a non-tensor
   is a TypeError naming ``indices``.
"""
import pytest

torch = pytest.importorskip("torch")

import gpuconv.torch as gt  # noqa: E402


@pytest.mark.parametrize("indices, error, message", [
    (torch.zeros((2, 3, 4), dtype=torch.int64), ValueError,
     r"^indices must have the shape of input, \(2, 3, 3\), got \(2, 3, 4\)$"),
    (torch.zeros((3, 3), dtype=torch.int64), ValueError, r"got \(3, 3\)$"),
    (None, TypeError, "^indices must be a torch.Tensor, got NoneType"),
    ([[0]], TypeError, "^indices must be a torch.Tensor, got list"),
], ids=["other shape", "other rank", "None", "list"])
def test_unbatched_max_unpool_errors_quote_the_shapes_given(indices, error, message):
    x = torch.rand(2, 3, 3)
    with pytest.raises(error, match=message):
        gt.max_unpool2d(x, indices, 2)


def test_unbatched_max_unpool_still_matches_torch():
    x = torch.rand(2, 6, 6, requires_grad=True)
    values, indices = torch.nn.functional.max_pool2d(x, 2, return_indices=True)
    expected = torch.nn.functional.max_unpool2d(values, indices, 2)
    got = gt.max_unpool2d(values, indices, 2)
    assert got.shape == expected.shape == (2, 6, 6)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
