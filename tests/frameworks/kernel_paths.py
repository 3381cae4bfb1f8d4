"""Skip a simulate() test, with the reason, while the launchers it reaches are still being
written: the CPU executor path needs ``gpuconv.<family>.launch.<entry point>`` for every
forward and backward call of the test."""
from __future__ import annotations

import importlib

import pytest


def missing_entry_points(qualified_names) -> list[str]:
    missing = []
    for qualified in qualified_names:
        module_name, _, name = qualified.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            missing.append(f"{qualified} ({error})")
            continue
        if not hasattr(module, name):
            missing.append(qualified)
    return missing


def require_entry_points(*qualified_names) -> None:
    missing = missing_entry_points(qualified_names)
    if missing:
        pytest.skip("the kernel launchers are not all written yet: missing " + ", ".join(missing))
