"""bench.bridge_host on the CPU: every case runs (the simulator with its launches stubbed), one
row each, and the simulator's real launch is back afterwards."""
import pytest

pytest.importorskip("torch")

from bench import bridge_host  # noqa: E402
from gpuconv.simulator import _module  # noqa: E402


def test_bridge_host_times_every_case_on_the_cpu(capsys):
    real_launch = _module.Function.__call__
    assert bridge_host.main(["--calls", "2"]) == 0
    assert _module.Function.__call__ is real_launch
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "host time per call, cpu (simulator, launches stubbed):"
    rows = [line for line in lines[1:] if line.endswith(" us")]
    assert len(rows) == 11 and all(float(row.split()[-2]) > 0 for row in rows)
