"""The kernel loader: source text and header digest, name checks, both executors' module builds,
compile errors as file:line, precompile and launcher discovery."""
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

import gpuconv
from gpuconv import _kernel_source, _kernels, _loader, compile_check, simulator
from gpuconv._paths import common_dir, kernel_root

CUDA_DIR = Path(__file__).parent / "cuda"


@pytest.fixture
def family():
    """Registers test families (absolute sources under tests/cuda) and removes them after."""
    made = []

    def register(file_name, name_expressions, hot=(), options=()):
        made.append(str(CUDA_DIR / file_name))
        return _kernels.register(made[-1], name_expressions, hot=hot, options=options)

    yield register
    for source in made:
        _kernels.FAMILIES.pop(source, None)
    for key in [k for k in _loader._modules if k[0].source in made]:
        del _loader._modules[key]
    for key in [k for k in _loader._functions if k[1][0].source in made]:
        del _loader._functions[key]


@pytest.fixture
def fake_simulator(monkeypatch):
    """Records load_module calls: what the loader hands the simulator, independently of it."""
    calls = []

    class Module:
        def __init__(self, kwargs):
            self.kwargs = kwargs

        def get_function(self, name):
            return ("kernel", name, self)

    def load_module(code, name_expressions, **kwargs):
        calls.append(dict(kwargs, code=code, name_expressions=tuple(name_expressions)))
        return Module(calls[-1])

    monkeypatch.setattr(simulator, "load_module", load_module, raising=False)
    return calls


def test_kernel_root_holds_the_shared_headers():
    assert (kernel_root() / "common" / "dtypes.cuh").is_file()
    assert common_dir() == kernel_root() / "common"
    relative = _kernels.KernelFamily("conv/direct.cu", ("k",))
    assert _kernel_source.source_path(relative) == kernel_root() / "conv" / "direct.cu"


def test_header_edit_changes_the_digest(tmp_path):
    include = tmp_path / "include"
    include.mkdir()
    (include / "outer.cuh").write_text('#pragma once\n#include "inner.cuh"\n')
    (include / "inner.cuh").write_text("#pragma once\nconstexpr int TILE = 16;\n")
    main = tmp_path / "main.cu"
    main.write_text('#include <cuda_fp16.h>\n#include "outer.cuh"\n__global__ void k() {}\n')

    # Found recursively (inner.cuh beside outer.cuh); the toolkit header is not in any folder.
    assert _kernel_source.included_headers(main, [include]) == [
        (include / "inner.cuh").resolve(), (include / "outer.cuh").resolve()]
    before = _kernel_source.headers_digest(main, [include])
    assert _kernel_source.headers_digest(main, [include]) == before
    (include / "inner.cuh").write_text("#pragma once\nconstexpr int TILE = 32;\n")
    assert _kernel_source.headers_digest(main, [include]) != before


def test_family_code_holds_the_digest_and_keeps_line_numbers(family):
    scale = family("scale.cu", ["scale<float>"])
    lines = _kernel_source.family_code(scale).splitlines()
    digest = _kernel_source.headers_digest(CUDA_DIR / "scale.cu", [common_dir()])
    assert lines[0] == f"// gpuconv included headers sha256 {digest}"
    assert lines[1] == f'#line 1 "{scale.source}"'
    assert lines[2:] == (CUDA_DIR / "scale.cu").read_text().splitlines()


def test_unknown_name_expression_is_a_value_error(family, fake_simulator):
    scale = family("scale.cu", ["scale<float>"])
    with pytest.raises(ValueError, match=r"name_expression 'scale<int>'.*scale<float>"):
        _loader.get_function(scale, "scale<int>", "simulator")
    with pytest.raises(ValueError, match="executor"):
        _loader.get_function(scale, "scale<float>", "opencl")
    assert fake_simulator == []


def test_simulator_build_gets_the_family_and_is_memoized_per_sanitizer(family, fake_simulator):
    scale = family("scale.cu", ["scale<float>", "scale<__half>"], options=["-DTEST_FLAG=1"])
    kind, name, module = _loader.get_function(scale, "scale<__half>", "simulator")
    assert (kind, name) == ("kernel", "scale<__half>")
    assert module.kwargs == dict(code=_kernel_source.family_code(scale),
                                 name_expressions=("scale<float>", "scale<__half>"),
                                 include_dirs=[str(common_dir())], options=("-DTEST_FLAG=1",),
                                 sanitize=None, source_name=scale.source)
    _loader.get_function(scale, "scale<float>", "simulator")
    assert len(fake_simulator) == 1          # the whole family is one module
    # Under a sanitizer each kernel asked for is a module of its own (an instrumented build of
    # a whole family costs g++ ~30 s for the kernel or two a sanitized run launches).
    with gpuconv.simulate(sanitize="address"):
        _loader.get_function(scale, "scale<float>", "simulator")
        _loader.get_function(scale, "scale<float>", "simulator")
    assert len(fake_simulator) == 2 and fake_simulator[1]["sanitize"] == "address"
    assert fake_simulator[1]["name_expressions"] == ("scale<float>",)
    with gpuconv.simulate(sanitize="address"):
        _loader.get_function(scale, "scale<__half>", "simulator")
    with gpuconv.simulate(sanitize="thread"):
        _loader.get_function(scale, "scale<__half>", "simulator")
    assert [(b["sanitize"], b["name_expressions"]) for b in fake_simulator[2:]] == [
        ("address", ("scale<__half>",)), ("thread", ("scale<__half>",))]
    # Outside simulate() the whole-family module is the one memoized first.
    _loader.get_function(scale, "scale<float>", "simulator")
    assert len(fake_simulator) == 4


def test_cupy_build_options_memo_per_device_and_compile_errors(family, monkeypatch):
    scale = family("scale.cu", ["scale<float>"], options=["-DTEST_FLAG=1"])
    device = {"id": 0}
    built = []

    class CompileException(Exception):
        pass

    class RawModule:
        def __init__(self, **kwargs):
            built.append(kwargs)

        def compile(self):
            if "undeclared_value" in built[-1]["code"]:
                source = built[-1]["code"].splitlines()[1].split('"')[1]
                raise CompileException(f"{source}(7): error: identifier \"undeclared_value\" "
                                       "is undefined")

        def get_function(self, name):
            return name

    cuda = types.SimpleNamespace(Device=lambda: types.SimpleNamespace(id=device["id"]),
                                 runtime=types.SimpleNamespace(getDevice=lambda: device["id"]),
                                 compiler=types.SimpleNamespace(CompileException=CompileException))
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(RawModule=RawModule, cuda=cuda))

    assert _loader.get_function(scale, "scale<float>", "cupy") == "scale<float>"
    _loader.get_function(scale, "scale<float>", "cupy")
    assert len(built) == 1
    assert built[0]["options"] == ("-std=c++17", f"-I{common_dir()}", "-DTEST_FLAG=1")
    assert built[0]["name_expressions"] == ["scale<float>"]
    assert built[0]["code"] == _kernel_source.family_code(scale)
    device["id"] = 1
    _loader.get_function(scale, "scale<float>", "cupy")
    assert len(built) == 2

    broken = family("compile_error.cu", ["broken<float>"])
    with pytest.raises(gpuconv.KernelCompileError) as error:
        _loader.get_function(broken, "broken<float>", "cupy")
    assert error.value.errors[0][:2] == (broken.source, 7)


def _line_of(text, file_name):
    lines = (CUDA_DIR / file_name).read_text().splitlines()
    return next(i for i, line in enumerate(lines, start=1) if text in line)


def test_nvrtc_compile_error_names_file_and_line(family):
    broken = family("compile_error.cu", ["broken<float>"])
    with pytest.raises(gpuconv.KernelCompileError) as error:
        compile_check.check_family(broken, "sm_80")
    file, line, message = error.value.errors[0]
    assert (file, line) == (broken.source, _line_of("= undeclared_value", "compile_error.cu"))
    assert "undeclared_value" in message
    assert f"{broken.source}:{line}:" in str(error.value)


@pytest.mark.skipif(not hasattr(simulator, "load_module"),
                    reason="gpuconv.simulator.load_module is not written yet")
def test_simulator_compile_error_names_file_and_line(family):
    broken = family("compile_error.cu", ["broken<float>"])
    with pytest.raises(gpuconv.KernelCompileError) as error:
        _loader.get_function(broken, "broken<float>", "simulator")
    file, line, _ = error.value.errors[0]
    assert (file, line) == (broken.source, _line_of("= undeclared_value", "compile_error.cu"))


def test_compile_error_paths_under_kernels_are_relative():
    log = f"{common_dir()}/dtypes.cuh(32): error: identifier \"INFINITY\" is undefined\n"
    error = gpuconv.KernelCompileError("conv/direct.cu", log, "sm_80")
    assert error.errors == [("common/dtypes.cuh", 32, 'error: identifier "INFINITY" is undefined')]
    assert str(error).startswith("kernel family conv/direct.cu (sm_80) failed to compile: "
                                 "common/dtypes.cuh:32: error")


def test_precompile_selects_families_and_dtypes(family, fake_simulator):
    halves = family("scale.cu", ["scale<__half>", "scale<float>"])
    doubles = family("local_array.cu", ["bin_counts<double>"])
    built = gpuconv.precompile([halves.source, doubles.source], dtypes=["float16"],
                               executor="simulator")
    assert built == [halves.source]
    assert [c["source_name"] for c in fake_simulator] == [halves.source]
    assert gpuconv.precompile([doubles.source], dtypes=[np.float64],
                              executor="simulator") == [doubles.source]
    assert gpuconv.precompile([halves.source], dtypes=[], executor="simulator") == []
    assert len(fake_simulator) == 2                 # no dtype asked: nothing built
    with pytest.raises(ValueError, match="families"):
        gpuconv.precompile(["conv/no_such_family.cu"], executor="simulator")
    with pytest.raises(TypeError, match="families"):
        gpuconv.precompile(halves.source, executor="simulator")
    with pytest.raises(ValueError, match="dtypes"):
        gpuconv.precompile([halves.source], dtypes=["int32"], executor="simulator")
    with pytest.raises(ValueError, match="executor"):
        gpuconv.precompile([halves.source], executor="gpu")


def test_precompile_keeps_kernels_of_no_dtype_and_builds_sanitized_kernels_one_by_one(
        family, fake_simulator):
    # The fake simulator compiles nothing: the names need not exist in the source.
    untyped = family("scale.cu", ["indices_check<false, 0>", "indices_check<true, 1>"])
    mixed = family("local_array.cu", ["bin_counts<double>", "bin_counts<float>", "count<2>"])
    assert gpuconv.precompile([untyped.source], dtypes=["float32"],
                              executor="simulator") == [untyped.source]
    with gpuconv.simulate(sanitize="address"):
        assert gpuconv.precompile([mixed.source], dtypes=["float64"],
                                  executor="simulator") == [mixed.source]
        # What precompile built is what a sanitized launch takes: nothing is built again.
        _loader.get_function(mixed, "bin_counts<double>", "simulator")
        _loader.get_function(mixed, "count<2>", "simulator")
    assert [(c["sanitize"], c["name_expressions"]) for c in fake_simulator] == [
        (None, ("indices_check<false, 0>", "indices_check<true, 1>")),
        ("address", ("bin_counts<double>",)), ("address", ("count<2>",))]


def test_import_launchers_imports_only_launch_modules(tmp_path, monkeypatch):
    package = tmp_path / "fakeops"
    (package / "conv").mkdir(parents=True)
    (package / "optional").mkdir()
    (package / "__init__.py").write_text("")
    (package / "conv" / "__init__.py").write_text("")
    (package / "conv" / "launch_direct.py").write_text(textwrap.dedent("""\
        from gpuconv._kernels import register
        FAMILY = register("fakeops/direct.cu", ["direct<float>"])
        """))
    (package / "conv" / "helpers.py").write_text("raise AssertionError('not a launcher')\n")
    (package / "optional" / "__init__.py").write_text("import module_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import fakeops
        assert _kernels.import_launchers(fakeops) == ["fakeops.conv.launch_direct"]
        assert "fakeops/direct.cu" in _kernels.FAMILIES
        assert "fakeops.conv.helpers" not in sys.modules
    finally:
        _kernels.FAMILIES.pop("fakeops/direct.cu", None)
        for name in [n for n in sys.modules if n.startswith("fakeops")]:
            del sys.modules[name]


@pytest.mark.gpu
def test_cupy_runs_a_loaded_family(family):
    import cupy
    scale = family("scale.cu", ["scale<float>", "scale<double>"])
    n = 200
    for dtype, name in ((np.float32, "scale<float>"), (np.float64, "scale<double>")):
        x = cupy.arange(n, dtype=dtype)
        y = cupy.full(n, np.nan, dtype=dtype)
        kernel = _loader.get_function(scale, name, "cupy")
        kernel(((n + 63) // 64,), (64,), (x, y, np.float32(2.5), np.int32(n)))
        np.testing.assert_array_equal(cupy.asnumpy(y), 2.5 * np.arange(n, dtype=dtype))


def test_shared_memory_opt_in_above_the_static_reserve(family):
    """get_function(..., shared_mem) sets a kernel's dynamic shared-memory limit when a launch
    takes more than 48 KiB less STATIC_SHARED_RESERVE (a GPU's default limit is 48 KiB less the
    kernel's static shared memory), and never lowers it; the simulator's kernels refuse a larger
    launch without it, as a GPU does."""
    scale = family("scale.cu", ["scale<float>"])
    default = _loader.DEFAULT_DYNAMIC_SHARED_BYTES
    fn = _loader.get_function(scale, "scale<float>", "simulator")
    x = np.arange(64, dtype=np.float32)
    y = np.zeros_like(x)
    args = (x, y, np.float32(2), np.int32(64))
    if not fn._shared_opted_in:    # the memoized module may carry an earlier opt-in
        with gpuconv.simulate(), pytest.raises(ValueError, match="max_dynamic_shared_size_bytes"):
            fn((1,), (64,), args, shared_mem=default + 16)
        assert not _loader.get_function(scale, "scale<float>", "simulator",
                                        _loader.OPT_IN_ABOVE)._shared_opted_in
    fn = _loader.get_function(scale, "scale<float>", "simulator", _loader.OPT_IN_ABOVE + 4)
    assert fn._shared_opted_in and fn.max_dynamic_shared_size_bytes >= default
    fn = _loader.get_function(scale, "scale<float>", "simulator", 80 * 1024)
    assert fn.max_dynamic_shared_size_bytes == 80 * 1024
    assert _loader.get_function(scale, "scale<float>", "simulator",
                                64 * 1024).max_dynamic_shared_size_bytes == 80 * 1024
    with gpuconv.simulate():
        fn((1,), (64,), args, shared_mem=80 * 1024)
    np.testing.assert_array_equal(y, 2 * x)


def test_precompile_for_cupy_without_cupy_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)     # import cupy now raises ImportError
    with pytest.raises(ImportError, match=r"gpuconv\[cuda12\]"):
        gpuconv.precompile(["conv/direct.cu"], executor="cupy")


def test_a_family_hashes_and_compares_by_its_contents_across_pickling():
    """The loader's memos key modules by family; the family's hash is kept after its first use
    (host time), so it must stay the contents' hash, and a pickled family must not carry this
    process's string hashes into another."""
    import pickle
    names, hot = ("a<float>", "b<float>"), frozenset({"a<float>"})
    made = _kernels.KernelFamily("conv/direct.cu", names, hot)
    same = _kernels.KernelFamily("conv/direct.cu", tuple(names), frozenset(hot))
    other = _kernels.KernelFamily("conv/direct.cu", ("a<float>",))
    assert hash(made) == hash(same) and made == same and {made: 1}[same] == 1
    assert made != other
    copy = pickle.loads(pickle.dumps(made))
    assert "_hash" not in copy.__dict__ and copy == made and hash(copy) == hash(made)
