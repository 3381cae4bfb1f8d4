"""api.md's signatures, compared with inspect.signature of the library: parameter names, order,
defaults and keyword-only markers; and, where torch is importable, with torch.nn.functional /
torch.nn.grad ("a user switches by changing the import", with the contract's renames input -> x,
input_size -> input_shape, weight_size -> weight_shape).

A function may take more parameters than the contract lists, but only keyword-only ones with a
default (data_format, deterministic, indices=...), so that every call written against the
contract -- or against PyTorch -- means the same thing.
"""
import ast
import inspect

import pytest

import gpuconv
from gpuconv import grad

# Copied from api.md, verbatim but for the function names.
CONTRACT = {
    "conv2d": '(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, activation=None, '
              'residual=None, algorithm="auto", data_format="NCHW", out=None)',
    "conv_transpose2d": "(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, "
                        "dilation=1, *, output_size=None)",
    "grad.conv2d_input": "(input_shape, weight, grad_output, stride=1, padding=0, dilation=1, groups=1)",
    "grad.conv2d_weight": "(x, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1)",
    "grad.conv2d_bias": "(grad_output)",
    "max_pool2d": "(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False)",
    "avg_pool2d": "(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, "
                  "divisor_override=None)",
    "lp_pool2d": "(x, norm_type, kernel_size, stride=None, ceil_mode=False)",
    "adaptive_avg_pool2d": "(x, output_size)",
    "adaptive_max_pool2d": "(x, output_size, return_indices=False)",
    "global_avg_pool2d": "(x)",
    "global_max_pool2d": "(x)",
    "spatial_pyramid_pool2d": '(x, levels=(1, 2, 4), mode="max")',
    "max_unpool2d": "(x, indices, kernel_size, stride=None, padding=0, output_size=None)",
    "roi_align": "(x, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False)",
    "roi_pool": "(x, boxes, output_size, spatial_scale=1.0)",
}
POOLING_AND_ROI = ["max_pool2d", "avg_pool2d", "lp_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
                   "global_avg_pool2d", "global_max_pool2d", "spatial_pyramid_pool2d", "max_unpool2d",
                   "roi_align", "roi_pool"]
# grad.F(grad_output, <F's own arguments>)
for _name in POOLING_AND_ROI:
    CONTRACT[f"grad.{_name}"] = "(grad_output, " + CONTRACT[_name][1:]


def parse(text):
    """[(name, kind, default or inspect.Parameter.empty)] of a '(a, b=1, *, c=2)' text."""
    function = ast.parse(f"def f{text}: pass").body[0]
    args = function.args
    positional = args.args
    defaults = [inspect.Parameter.empty] * (len(positional) - len(args.defaults)) + [
        ast.literal_eval(d) for d in args.defaults]
    result = [(a.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD, d) for a, d in zip(positional, defaults)]
    result += [(a.arg, inspect.Parameter.KEYWORD_ONLY,
                inspect.Parameter.empty if d is None else ast.literal_eval(d))
               for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    return result


def library(name):
    module, _, attribute = name.rpartition(".")
    return getattr(grad if module == "grad" else gpuconv, attribute)


def check_compatible(function, expected, label):
    parameters = list(inspect.signature(function).parameters.values())
    by_name = {p.name: p for p in parameters}
    positional = [e for e in expected if e[1] is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    actual_positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert [p.name for p in actual_positional] == [e[0] for e in positional], label
    for name, kind, default in expected:
        p = by_name[name]
        assert p.kind == kind, f"{label}: {name} is {p.kind}, expected {kind}"
        assert p.default == default and type(p.default) is type(default), \
            f"{label}: {name} defaults to {p.default!r}, expected {default!r}"
    named = {e[0] for e in expected}
    for p in parameters:
        if p.name not in named:
            assert p.kind is p.KEYWORD_ONLY and p.default is not p.empty, \
                f"{label}: extra parameter {p.name} must be keyword-only with a default"


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_signature_matches_the_contract(name):
    check_compatible(library(name), parse(CONTRACT[name]), name)


def test_every_documented_name_is_importable():
    for name in ["conv2d", "conv_transpose2d", "conv_algorithms", "explain", "conv2d_output_shape",
                 "conv2d_flops", "precompile", "set_deterministic", "simulate", "grad", *POOLING_AND_ROI]:
        assert hasattr(gpuconv, name), name
    documented_gradients = {"conv2d_input", "conv2d_weight", "conv2d_bias", *POOLING_AND_ROI}
    assert documented_gradients <= set(dir(grad))
    assert documented_gradients <= set(grad.__all__)
    import gpuconv.grad as grad_module
    assert grad_module is gpuconv.grad


def test_set_deterministic_signature():
    parameters = list(inspect.signature(gpuconv.set_deterministic).parameters.values())
    assert len(parameters) == 1 and parameters[0].default is True


# ----------------------------------------------------------------------------- against torch

torch = pytest.importorskip("torch")
F = torch.nn.functional
RENAMES = {"input": "x", "input_size": "input_shape", "weight_size": "weight_shape"}


def torch_parameters(function, doc_name=None):
    """torch's own parameters (renamed as the contract does); builtins through their docstring."""
    try:
        signature = inspect.signature(function)
        if any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values()):
            raise ValueError("dispatcher")
        text = str(signature).split(" ->")[0]
    except ValueError:
        first_line = next(line for line in function.__doc__.strip().splitlines() if line.strip())
        text = first_line[first_line.index("("):first_line.rindex(")") + 1]
    # drop annotations: torch's python functions annotate with typing names
    function_ast = ast.parse(f"def f{text}: pass").body[0]
    for a in function_ast.args.args + function_ast.args.kwonlyargs:
        a.annotation = None
    text = ast.unparse(function_ast.args)
    return [(RENAMES.get(n, n), k, d) for n, k, d in parse(f"({text})")]


TORCH = {
    "conv2d": F.conv2d, "conv_transpose2d": F.conv_transpose2d,
    "grad.conv2d_input": torch.nn.grad.conv2d_input, "grad.conv2d_weight": torch.nn.grad.conv2d_weight,
    "max_pool2d": F.max_pool2d_with_indices, "avg_pool2d": F.avg_pool2d, "lp_pool2d": F.lp_pool2d,
    "adaptive_avg_pool2d": F.adaptive_avg_pool2d, "adaptive_max_pool2d": F.adaptive_max_pool2d_with_indices,
    "max_unpool2d": F.max_unpool2d,
}


@pytest.mark.parametrize("name", sorted(TORCH))
def test_positional_parameters_match_torch(name):
    expected = [p for p in torch_parameters(TORCH[name]) if p[1] is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    parameters = [p for p in inspect.signature(library(name)).parameters.values()
                  if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert [p.name for p in parameters] == [e[0] for e in expected], name
    for p, (_, _, default) in zip(parameters, expected):
        assert p.default == default, f"{name}: {p.name} defaults to {p.default!r}, torch {default!r}"
