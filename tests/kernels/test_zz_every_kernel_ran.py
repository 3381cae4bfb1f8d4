"""Every kernel the library can launch ran under the simulator in the forward, reverse and random
thread orders during this test session (issue: "the CI run executes every kernel of the library
under at least the forward, reverse and one random order").

Named test_zz_* so that it runs after the other kernel tests of this folder; it only judges a
session that ran all of them (a subset run with -k or a single file skips it).
"""
from pathlib import Path

import pytest

from gpuconv._kernels import FAMILIES, import_launchers
from gpuconv.simulator._module import launched_kernels

ORDERS = ("forward", "reverse", "random")
HERE = Path(__file__).resolve().parent


def _whole_folder_ran(session) -> bool:
    wanted = {p for p in HERE.glob("test_*.py") if p.name != Path(__file__).name}
    ran = {Path(str(item.path)).resolve() for item in session.items}
    return wanted <= ran and not session.config.getoption("keyword") \
        and not session.config.getoption("markexpr")


def test_every_registered_kernel_ran_in_every_order(request):
    if not _whole_folder_ran(request.session):
        pytest.skip("judges only a session that ran every kernel test of tests/kernels")
    import_launchers()
    launched = launched_kernels()
    missing = [f"{family.source}: {name} [{order}]"
               for family in FAMILIES.values() for name in family.name_expressions
               for order in ORDERS if (family.source, name, order) not in launched]
    total = sum(len(f.name_expressions) for f in FAMILIES.values()) * len(ORDERS)
    assert not missing, (f"{len(missing)} of {total} (kernel, order) pairs never ran under the "
                         "simulator:\n" + "\n".join(missing))
