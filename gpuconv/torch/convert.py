"""``convert(model)``: run every supported layer of a torch model on gpuconv.

A supported torch layer (exactly ``torch.nn.Conv2d``, ``ConvTranspose2d``, ``MaxPool2d``,
``AvgPool2d``, ``LPPool2d``, ``AdaptiveAvgPool2d``, ``AdaptiveMaxPool2d`` or ``MaxUnpool2d``)
becomes its gpuconv twin by a change of class alone: the twin subclasses the torch layer and
overrides only ``forward``, so the module object, its Parameter and buffer objects, hooks,
training flag and every reference to it (an optimizer's parameter groups, a shared layer used
twice) stay exactly as they were. ``torchvision.ops.RoIAlign`` / ``RoIPool`` (stateless) are
replaced in their parent by gpuconv's ``RoIAlign`` / ``RoIPool`` with the same settings and
the same hooks (a reference held to the torchvision object outside the model still sees it).

A layer parametrized with ``torch.nn.utils.parametrize`` (``register_parametrization``,
``torch.nn.utils.parametrizations.weight_norm`` / ``spectral_norm`` / ``orthogonal``) has a
class torch generated for it, ``Parametrized<Layer>``, which only adds the parametrized tensors'
properties: it becomes the same generated class over the gpuconv twin, so its forward is
gpuconv's, its parametrizations are kept, and ``remove_parametrizations`` gives the twin back.

Left alone, and listed in the report with the reason: subclasses of those layers (their forward
may do something else), lazy layers not yet initialized (``torch.nn.LazyConv2d``: convert after
their first forward pass, which makes them plain torch layers), layers whose parameters have a
dtype or device gpuconv does not take, and the torch layers gpuconv has no counterpart for (1-D/3-D
convolution and pooling, fractional max pooling). A Conv2d with a padding_mode other than "zeros"
is converted: its twin pads the input as torch's layer does (modules.py).
"""
from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field

import torch
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.utils import parametrize

from .._args import as_bool
from . import modules

__all__ = ["convert", "ConversionReport", "Swapped", "Skipped"]

# Exact torch type -> the gpuconv subclass it becomes.
TWINS = {
    torch.nn.Conv2d: modules.Conv2d,
    torch.nn.ConvTranspose2d: modules.ConvTranspose2d,
    torch.nn.MaxPool2d: modules.MaxPool2d,
    torch.nn.AvgPool2d: modules.AvgPool2d,
    torch.nn.LPPool2d: modules.LPPool2d,
    torch.nn.AdaptiveAvgPool2d: modules.AdaptiveAvgPool2d,
    torch.nn.AdaptiveMaxPool2d: modules.AdaptiveMaxPool2d,
    torch.nn.MaxUnpool2d: modules.MaxUnpool2d,
}

# torch layers of the same families that gpuconv does not implement (looked up by name: some
# exist only in newer torch releases).
NO_COUNTERPART = tuple(
    cls for cls in (getattr(torch.nn, name, None) for name in (
        "Conv1d", "Conv3d", "ConvTranspose1d", "ConvTranspose3d", "MaxPool1d", "MaxPool3d",
        "AvgPool1d", "AvgPool3d", "LPPool1d", "LPPool3d", "AdaptiveAvgPool1d",
        "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool3d", "MaxUnpool1d",
        "MaxUnpool3d", "FractionalMaxPool2d", "FractionalMaxPool3d"))
    if cls is not None)

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
GPUCONV_TYPES = (*TWINS.values(), modules.RoIAlign, modules.RoIPool)


@dataclass(frozen=True)
class Swapped:
    name: str       # the module's qualified name in the model ("" is the model itself)
    source: str     # the type it had
    target: str     # the gpuconv type it has now


@dataclass(frozen=True)
class Skipped:
    name: str
    type: str
    reason: str


@dataclass
class ConversionReport:
    """What ``convert`` did: the converted model (the argument itself when ``inplace``), the
    modules it swapped and the conv/pool modules it left alone, with the reason."""
    model: torch.nn.Module
    swapped: list[Swapped] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"gpuconv.torch.convert: swapped {len(self.swapped)} module(s), "
                 f"skipped {len(self.skipped)}"]
        lines += [f"  swapped  {s.name or '(model)'}: {s.source} -> {s.target}"
                  for s in self.swapped]
        lines += [f"  skipped  {s.name or '(model)'} ({s.type}): {s.reason}" for s in self.skipped]
        return "\n".join(lines)


def _type_name(cls: type) -> str:
    for public in ("torch.nn", "gpuconv.torch", "torchvision.ops"):
        if getattr(sys.modules.get(public), cls.__name__, None) is cls:
            return f"{public}.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _torchvision_replacements() -> dict:
    """torchvision's ROI layer types -> a factory of the gpuconv layer with the same settings.
    torchvision is never imported here: a model holding its layers has imported it already."""
    ops = sys.modules.get("torchvision.ops")
    if ops is None:
        return {}
    return {
        ops.RoIAlign: lambda m: modules.RoIAlign(m.output_size, m.spatial_scale,
                                                 m.sampling_ratio, m.aligned),
        ops.RoIPool: lambda m: modules.RoIPool(m.output_size, m.spatial_scale),
    }


def _carry_hooks(old: torch.nn.Module, new: torch.nn.Module) -> torch.nn.Module:
    """``new`` with ``old``'s hook tables (forward, pre-forward, backward, state-dict hooks): the
    same dict objects, so handles registered on ``old`` still remove them."""
    for attribute, value in vars(old).items():
        if "hook" in attribute and attribute.startswith("_"):
            setattr(new, attribute, value)
    return new


def _layer_type(module: torch.nn.Module) -> type:
    """The module's layer type: for a parametrized module, the type torch's parametrize
    subclassed (its generated class adds properties only; forward is the layer's)."""
    return parametrize.type_before_parametrizations(module)


def _parametrized_twin(generated: type, twin: type) -> type:
    """The class torch's parametrize would have generated for ``twin``: ``twin`` subclassed with
    ``generated``'s own attributes (the parametrized tensors' properties, its __getstate__ and
    __deepcopy__). One class per module, as torch's: the properties belong to the class."""
    namespace = {key: value for key, value in vars(generated).items()
                 if key not in ("__dict__", "__weakref__", "__qualname__")}
    return type(f"Parametrized{twin.__name__}", (twin,), namespace)


def _shown_type(module: torch.nn.Module) -> str:
    # The generated ParametrizedConv2d classes all print alike: name the layer they wrap.
    if parametrize.is_parametrized(module):
        return f"{_type_name(_layer_type(module))} (parametrized)"
    return _type_name(type(module))


def _parameter_problem(module: torch.nn.Module) -> str | None:
    # Recursive: a parametrized layer's tensors live in its parametrizations (original, or
    # original0, original1 ...); a plain layer has no submodules.
    for pname, p in module.named_parameters():
        if p.dtype not in SUPPORTED_DTYPES:
            return f"parameter {pname} has dtype {p.dtype}; gpuconv takes float16, bfloat16, " \
                   "float32 and float64"
        if p.device.type not in ("cpu", "cuda"):
            return f"parameter {pname} is on a {p.device.type} device; gpuconv takes CPU and " \
                   "CUDA tensors"
    return None


def _model_device_problem(model: torch.nn.Module) -> str | None:
    """Why the layers without tensors of their own (the poolings, the ROI layers) cannot run in
    ``model``: a parameter or buffer of it on a device gpuconv does not take (a meta or mps
    model feeds them such tensors); None when there is none."""
    named = (*model.named_parameters(), *model.named_buffers())
    for name, t in named:
        if t.device.type not in ("cpu", "cuda"):
            return (f"the model's {name} is on a {t.device.type} device; gpuconv takes CPU and "
                    "CUDA tensors")
    return None


def _why_not(module: torch.nn.Module, replacements: dict, model_problem: str | None) -> str | None:
    """None if the module can be converted, else the reason it is left alone; ``model_problem``
    (_model_device_problem) stands for the tensors of a layer that has none."""
    cls = _layer_type(module)
    if isinstance(module, LazyModuleMixin):
        # A lazy layer keeps its class until its first forward pass, even once load_state_dict
        # has given it parameters; then it becomes cls_to_become.
        becomes = module.cls_to_become or cls
        if becomes not in TWINS:
            return (f"a lazy layer that becomes a {_type_name(becomes)}, which has no gpuconv "
                    "counterpart")
        state = ("whose parameters are not initialized yet" if module.has_uninitialized_params()
                 else "not yet run")
        return (f"a lazy layer {state}: its first forward pass makes it a "
                f"{_type_name(becomes)}; convert after it")
    own_tensors = next(module.parameters(), None) is not None
    if cls in TWINS:
        return _parameter_problem(module) if own_tensors else model_problem
    if cls in replacements:
        return model_problem
    for base in (*TWINS, *replacements):
        if isinstance(module, base):
            return (f"a subclass of {_type_name(base)}: its forward may differ from the base "
                    "class's, so it is kept")
    return f"{_type_name(cls)} has no gpuconv counterpart"


def _is_candidate(module: torch.nn.Module, replacements: dict) -> bool:
    """Modules the report speaks about: the conv/pool families, not every layer of the model."""
    return (isinstance(module, (*TWINS, *replacements, *NO_COUNTERPART))
            and not isinstance(module, GPUCONV_TYPES))


def convert(model: torch.nn.Module, inplace: bool = True) -> ConversionReport:
    """Make every supported conv/pool layer of ``model`` run on gpuconv (see the module
    docstring); ``inplace=False`` converts a deep copy and leaves ``model`` untouched.
    Returns a ``ConversionReport``; its ``model`` is the converted model."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not as_bool("inplace", inplace):
        model = copy.deepcopy(model)
    replacements = _torchvision_replacements()
    report = ConversionReport(model)
    model_problem = _model_device_problem(model)
    done = set()    # ids of modules already handled (a shared layer appears under several names)
    replaced = {}   # id of a replaced module -> its gpuconv replacement (one per shared layer)
    for name, module in list(model.named_modules(remove_duplicate=False)):
        if not _is_candidate(module, replacements):
            continue
        source = _layer_type(module)
        shown_source = _shown_type(module)
        reason = _why_not(module, replacements, model_problem)
        if reason is not None:
            if id(module) not in done:
                report.skipped.append(Skipped(name, shown_source, reason))
            done.add(id(module))
            continue
        if source in TWINS:
            twin = TWINS[source]
            module.__class__ = (_parametrized_twin(type(module), twin)
                                if parametrize.is_parametrized(module) else twin)
            target = _shown_type(module)
        else:
            if id(module) not in replaced:
                replaced[id(module)] = _carry_hooks(
                    module, replacements[source](module).train(module.training))
            new = replaced[id(module)]
            target = _type_name(type(new))
            if name:
                parent_name, _, child = name.rpartition(".")
                setattr(model.get_submodule(parent_name), child, new)
            else:
                report.model = new
        if id(module) not in done:
            report.swapped.append(Swapped(name, shown_source, target))
        done.add(id(module))
    return report
