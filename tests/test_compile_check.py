"""The offline NVRTC check (`python -m gpuconv compile`): resources per kernel and arch from the
PyPI wheel's NVRTC, hot-kernel defects, the command line."""
import argparse
import json
from pathlib import Path

import pytest

from gpuconv import KernelCompileError, _kernels, compile_check

CUDA_DIR = Path(__file__).parent / "cuda"
ARCHS = ["sm_80", "sm_90"]


@pytest.fixture
def family():
    """Registers test families (absolute sources under tests/cuda) and removes them after."""
    made = []

    def register(file_name, name_expressions, hot=()):
        made.append(str(CUDA_DIR / file_name))
        return _kernels.register(made[-1], name_expressions, hot=hot)

    yield register
    for source in made:
        _kernels.FAMILIES.pop(source, None)


def run_cli(*argv):
    parser = argparse.ArgumentParser()
    compile_check.add_arguments(parser)
    return compile_check.run(parser.parse_args(list(argv)))


def test_parse_ptxas_log_keeps_entries_and_their_frames():
    log = """\
ptxas info    : 0 bytes gmem
ptxas info    : Function properties for _Z6helperv
ptxas         .     48 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Compiling entry function '_Z1kIfEvPf' for 'sm_80'
ptxas info    : Function properties for _Z1kIfEvPf
ptxas         .     8 bytes stack frame, 12 bytes spill stores, 16 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 1024 bytes smem, 372 bytes cmem[0]
ptxas info    : Compiling entry function '_Z1kIdEvPd' for 'sm_80'
ptxas info    : Function properties for _Z1kIdEvPd
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 20 registers, used 0 barriers, 48 bytes cumulative stack size, 372 bytes cmem[0]
"""
    assert compile_check.parse_ptxas_log(log) == {
        "_Z1kIfEvPf": dict(registers=255, smem=1024, stack=8, spill_stores=12, spill_loads=16),
        "_Z1kIdEvPd": dict(registers=20, smem=0, stack=48, spill_stores=0, spill_loads=0),
    }


def test_resources_of_a_clean_hot_family(family):
    names = ["scale<float>", "scale<__half>", "scale<__nv_bfloat16>", "scale<double>"]
    scale = family("scale.cu", names, hot=names)
    report = compile_check.run_check([scale], ARCHS)
    assert report.errors == [] and report.ok
    assert sorted((k.kernel, k.arch) for k in report.kernels) == sorted(
        (n, a) for n in names for a in ARCHS)
    for k in report.kernels:
        assert 0 < k.registers <= 255
        # The 64-entry static shared tile holds the accumulator type: double for double only.
        assert k.smem_bytes == 64 * (8 if k.kernel == "scale<double>" else 4)
        assert (k.stack_bytes, k.spill_bytes, k.defects()) == (0, 0, [])


def test_runtime_indexed_local_array_fails_only_when_hot(family):
    cold = compile_check.check_family(family("local_array.cu", ["bin_counts<float>"]), "sm_80")
    assert cold[0].stack_bytes > 0 and cold[0].defects() == []
    _kernels.FAMILIES.pop(str(CUDA_DIR / "local_array.cu"))
    hot = family("local_array.cu", ["bin_counts<float>"], hot=["bin_counts<float>"])
    report = compile_check.run_check([hot], ARCHS)
    assert not report.ok and report.errors == []
    assert len(report.defects()) == len(ARCHS)
    assert all("stack frame" in d for d in report.defects())


def test_cli_reports_json_and_fails_on_hot_defects(family, capsys):
    hot = family("local_array.cu", ["bin_counts<float>"], hot=["bin_counts<float>"])
    assert run_cli("--arch", "sm_90", "--family", hot.source, "--json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["archs"] == ["sm_90"]
    [kernel] = doc["kernels"]
    assert kernel["kernel"] == "bin_counts<float>" and kernel["stack_bytes"] > 0
    assert kernel["defects"]


def test_cli_compile_error_exits_non_zero(family, capsys):
    broken = family("compile_error.cu", ["broken<float>"])
    assert run_cli("--arch", "sm_80", "--family", broken.source) == 1
    captured = capsys.readouterr()
    assert f"{broken.source}:" in captured.err and "1 compile errors" in captured.out


def test_a_name_expression_matching_no_kernel_is_named(family):
    wrong = family("scale.cu", ["scale<float, 3>"])
    with pytest.raises(KernelCompileError) as error:
        compile_check.check_family(wrong, "sm_80")
    assert error.value.errors[0][0] == "__nv_name_map"
    assert "does not name a kernel" in str(error.value)


def test_cli_rejects_bad_arguments(capsys):
    assert run_cli("--arch", "ampere") == 2
    assert "--arch" in capsys.readouterr().err
    assert run_cli("--family", "conv/no_such_family.cu") == 2
    assert "--family" in capsys.readouterr().err
    # A leading zero names no architecture (NVRTC would refuse -arch=sm_080 per family).
    assert run_cli("--arch", "sm_080") == 2
    assert "'sm_080' is not an architecture" in capsys.readouterr().err
    assert compile_check.parse_archs("80, sm_90,compute_80") == ["sm_80", "sm_90"]


def test_cli_checks_a_family_named_twice_once(family, capsys):
    scale = family("scale.cu", ["scale<float>"])
    assert run_cli("--arch", "sm_80", "--family", scale.source, "--family", scale.source,
                   "--json") == 0
    assert [k["kernel"] for k in json.loads(capsys.readouterr().out)["kernels"]] == [
        "scale<float>"]


def test_cli_rejects_an_arch_nvrtc_does_not_support(family, capsys):
    scale = family("scale.cu", ["scale<float>"])
    assert run_cli("--arch", "sm_20", "--family", scale.source) == 2
    assert "not supported by NVRTC" in capsys.readouterr().err


def test_library_families_pass_the_check(library_compile_check):
    # On whatever families the launchers register today (conftest.py: which archs, and why).
    returncode, output = library_compile_check
    assert returncode == 0, output
    assert " families, " in output


@pytest.mark.parametrize("arch", ARCHS)
def test_large_simt_tile_fits_two_blocks_per_sm(arch):
    # simt_gemm.cuh's GC_SIMT_LAUNCH_BOUNDS: the 128 x 128 tile (256 threads of 8x8) is held to
    # 128 registers, 2 blocks per SM, without spills (kernels/conv/NOTES.md "A 128-register
    # budget for the large SIMT tile"); the 128 x 64 tile on 128 threads is left unbounded.
    names = tuple(f"conv2d_implicit_gemm_precomputed<{t}, {nhwc}, 128, 128, 8, 8, 8>"
                  for t in ("float", "__half") for nhwc in ("false", "true"))
    mid = "conv2d_implicit_gemm_precomputed<float, false, 128, 64, 8, 8, 8>"
    from gpuconv.conv import launch_implicit_gemm
    source = launch_implicit_gemm.FAMILY
    reduced = _kernels.KernelFamily(source.source, names + (mid,), frozenset(names),
                                    source.options)
    found = {k.kernel: k for k in compile_check.check_family(reduced, arch)}
    for name in names:
        assert found[name].registers * 256 * 2 <= 65536, (name, found[name].registers)
        assert not found[name].defects()
    assert found[mid].registers > 128      # unbounded: its 3 blocks per SM spill at 128


def test_an_arch_specific_family_is_checked_on_its_target_only():
    # kernels/conv/implicit_gemm_wgmma.cu uses wgmma (sm_90a only): the check builds it for
    # sm_90a when asked for sm_90, not at all for sm_80, and its hot kernels have no defect.
    from gpuconv.conv import launch_implicit_gemm
    wgmma = launch_implicit_gemm.WGMMA_FAMILY
    assert wgmma.arch == "sm_90a" and wgmma.compute_capability == "90"
    assert compile_check.family_target(wgmma, "sm_80") is None
    assert compile_check.family_target(wgmma, "sm_90") == "sm_90a"
    assert compile_check.family_target(launch_implicit_gemm.FAMILY, "sm_80") == "sm_80"
    report = compile_check.run_check([wgmma], ["sm_80", "sm_90"])
    assert not report.errors and {k.arch for k in report.kernels} == {"sm_90a"}
    assert len(report.kernels) == len(wgmma.name_expressions) and not report.defects()


def test_register_refuses_an_arch_that_is_not_arch_specific():
    for arch in ("sm_90", "compute_90a", "90a"):
        with pytest.raises(ValueError, match="arch must be None or an arch-specific target"):
            _kernels.register("conv/never_registered.cu", ["k<float>"], arch=arch)
    assert "conv/never_registered.cu" not in _kernels.FAMILIES
