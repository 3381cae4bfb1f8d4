"""bench.models (whole converted models against native PyTorch) end to end on the CPU, with a
small stand-in for the torchvision models (torchvision is not a test dependency): the logits
check, the timings of both variants, the JSON and the summary table."""
import json

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from bench import models  # noqa: E402

TINY = models.Settings("cpu", batch=2, image=12, dtype="float32", warmup=0, rounds=2,
                       runs_per_round=1)


def tiny_net():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def test_models_run_checks_times_and_writes_results(tmp_path):
    document = models.run(["resnet50"], list(models.LAYOUTS), TINY, tmp_path,
                          build=lambda architecture: tiny_net)
    saved = json.loads((tmp_path / "models.json").read_text())
    assert saved["mode"] == "cpu" and saved["settings"]["batch"] == 2
    assert saved["environment"]["git"]["commit"]
    assert [c["layout"] for c in saved["cases"]] == ["NCHW", "channels_last"]
    for case in document["cases"]:
        assert case["status"] == "ok" and case["layers_swapped"] == 5  # 3 convs, 2 pools
        assert case["logits_max_rel_error"] < 1e-5
        for mode in ("forward", "train_step"):
            t = case["timings"][mode]
            assert t["native_ms"] > 0 and t["gpuconv_ms"] > 0 and t["runs"] == 2
            assert t["ratio"] == pytest.approx(t["native_ms"] / t["gpuconv_ms"])
    table = (tmp_path / "models.md").read_text()
    assert "say nothing about GPU speed" in table and table.count("| resnet50 |") == 2


def test_models_run_compiled(tmp_path):
    settings = models.Settings(**{**models.asdict(TINY), "compile_backend": "aot_eager"})
    torch._dynamo.reset()
    document = models.run(["resnet50"], ["channels_last"], settings, tmp_path,
                          build=lambda architecture: tiny_net)
    (case,) = document["cases"]
    assert case["status"] == "ok" and case["compile_backend"] == "aot_eager"
    assert case["logits_max_rel_error"] < 1e-5 and case["timings"]["train_step"]["runs"] == 2
    assert "backend='aot_eager'" in (tmp_path / "models.md").read_text()


def test_a_model_whose_logits_disagree_is_not_timed(tmp_path, monkeypatch):
    monkeypatch.setitem(models.LOGIT_TOLERANCE, "float32", -1.0)
    document = models.run(["resnet50"], ["NCHW"], TINY, tmp_path,
                          build=lambda architecture: tiny_net)
    (case,) = document["cases"]
    assert case["status"] == "mismatch" and "timings" not in case
    assert "mismatch: not timed" in (tmp_path / "models.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--arch", "vgg16"], "--arch must be among"),
    (["--layout", "NHWC"], "--layout must be among"),
    (["--batch", "0"], "--batch must be >= 1"),
])
def test_command_line_refuses_bad_options(argv, message, capsys):
    with pytest.raises(SystemExit):
        models.main(argv)
    assert message in capsys.readouterr().err


def test_cuda_graph_option_needs_a_gpu_and_eager_models(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        models.main(["--cuda-graph"])
    assert "--cuda-graph needs a CUDA GPU" in capsys.readouterr().err


@pytest.mark.gpu
def test_models_run_captured_in_cuda_graphs(tmp_path):
    # the replays of both models' captured forward and training step are what is timed
    settings = models.Settings("cuda", batch=2, image=12, dtype="float32", warmup=1, rounds=2,
                               runs_per_round=1, cuda_graph=True)
    document = models.run(["resnet50"], list(models.LAYOUTS), settings, tmp_path,
                          build=lambda architecture: tiny_net)
    for case in document["cases"]:
        assert case["status"] == "ok" and case["cuda_graph"]
        assert case["timings"]["train_step"]["gpuconv_ms"] > 0
    assert "captured in CUDA graphs" in (tmp_path / "models.md").read_text()
