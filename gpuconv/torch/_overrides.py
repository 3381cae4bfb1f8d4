"""torch's ``__torch_function__`` protocol for gpuconv.torch's public functions.

``torch.nn.functional``'s functions first hand a call to the ``__torch_function__`` of any
tensor-like argument that overrides it (``torch.overrides.handle_torch_function``), and
gpuconv.torch's do the same, so they work wherever torch's do:
- torch.fx: tracing a model whose own ``forward`` calls ``gpuconv.torch.conv2d`` records one
  ``call_function`` node (an fx Proxy overrides the protocol); so do torchvision's
  ``create_feature_extractor`` and FX quantization, which trace that way;
- tensor subclasses and ``TorchFunctionMode``s (``with torch.device(...)``, user modes) see the
  call, and a subclass gets its own type back, as from torch's functions.
A plain tensor or Parameter does not override the protocol: the check is one C call.

Under ``torch.compile`` Dynamo traces the functions themselves: their Python around the kernels
and autograd Functions, down to each computation, which is one custom operator in the graph
(_custom_op.py).
"""
from __future__ import annotations

import functools

from torch.overrides import handle_torch_function, has_torch_function_variadic

from ._args import name_input_as_torch


def dispatches_torch_function(function):
    """Decorate a public function: a call where an argument overrides ``__torch_function__`` (or
    a torch function mode is on) goes to it, with the decorated function as the called API.
    Every argument is looked at, as one C call (~0.4 us): naming the tensor parameters instead
    would cost more in Python. A tensor-like inside a list (roi_align's per-image boxes) is not
    seen, as in torchvision, whose list of boxes is concatenated first. An argument error names
    the image ``input``, as this front's signatures do (``name_input_as_torch``)."""
    @functools.wraps(function)
    def dispatcher(*args, **kwargs):
        if has_torch_function_variadic(*args, *kwargs.values()):
            return handle_torch_function(dispatcher, (*args, *kwargs.values()), *args, **kwargs)
        try:
            return function(*args, **kwargs)
        except (ValueError, TypeError) as error:
            name_input_as_torch(error)
            raise
    return dispatcher
