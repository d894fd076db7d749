"""``--compile``: in one process the recipe's whole loss is one compiled region (the model with
its loss terms), and the LVM's GRU enters it as plain tensor operations with ``nn.GRU``'s own
parameters. Compiled here with Dynamo's ``eager`` backend (the same tracing and graph breaks as
on a GPU, no C++ or Triton build), so what is checked is what gets traced and that training
with it gives the uncompiled run's numbers."""

from __future__ import annotations

import pytest
import torch

import uncollapse.trainers.compiling as compiling
import uncollapse.trainers.lvm.model as lvm_model
from tests.trainers.contrastive.test_recipe import config as contrastive_config
from tests.trainers.lvm.test_recipe import config as lvm_config
from uncollapse.trainers.contrastive.recipe import ContrastiveRecipe
from uncollapse.trainers.engine import train
from uncollapse.trainers.lvm.model import RNNBackbone, rnn_unrolled
from uncollapse.trainers.lvm.recipe import LVMRecipe
from uncollapse.trainers.run_dir import RunDir


@pytest.mark.parametrize("kind", ["gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_the_unrolled_rnn_is_torchs_with_its_own_parameters(kind, layers):
    torch.manual_seed(layers)
    backbone = RNNBackbone(kind, 16, layers, dropout=0.3).eval()
    x = torch.randn(6, 5, 16, requires_grad=True)
    expected = backbone(x)
    got = rnn_unrolled(backbone.rnn, x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # and the same gradients, for the input and every parameter
    grads = torch.autograd.grad(expected.square().sum(), [x, *backbone.parameters()])
    unrolled = torch.autograd.grad(got.square().sum(), [x, *backbone.parameters()])
    for a, b in zip(grads, unrolled, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


@pytest.fixture
def traced(monkeypatch):
    """Compile with the eager backend; record what was compiled and every unrolled GRU call."""
    seen = {"compiled": [], "unrolled": 0, "modes": []}
    real_compile, real_unrolled = torch.compile, lvm_model.rnn_unrolled

    def fake_compile(fn, mode=None):
        seen["compiled"].append(fn)
        seen["modes"].append(mode)
        return real_compile(fn, backend="eager")

    def spy(rnn, x):
        seen["unrolled"] += 1
        return real_unrolled(rnn, x)

    monkeypatch.setattr(compiling.torch, "compile", fake_compile)
    monkeypatch.setattr(lvm_model, "rnn_unrolled", spy)
    torch._dynamo.reset()
    yield seen
    torch._dynamo.reset()


def curve(out) -> list[float]:
    return [r["loss"] for r in RunDir(out).read_metrics()]


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_compile_traces_the_lvm_loss_with_its_rnn_and_trains_as_eager(arch, drift_sequences,
                                                                      tmp_path, traced):
    overrides = dict(steps=30, arch=arch, layers=2, dropout=0.0, precision="fp32")
    train(LVMRecipe, lvm_config(drift_sequences, tmp_path / "eager", **overrides))
    assert traced["compiled"] == [] and traced["unrolled"] == 0
    train(LVMRecipe, lvm_config(drift_sequences, tmp_path / "compiled", compile=True,
                                **overrides))
    (compiled,) = traced["compiled"]
    assert compiled.__func__ is LVMRecipe.loss  # the recipe's loss, model and all
    assert traced["modes"] == [None]
    assert traced["unrolled"] >= 1  # Dynamo traced the RNN (it refuses nn.GRU itself)
    eager, with_compile = curve(tmp_path / "eager"), curve(tmp_path / "compiled")
    assert len(eager) == len(with_compile) >= 6
    assert with_compile == pytest.approx(eager, rel=1e-4)


def test_compile_leaves_the_contrastive_loss_equal(caption_data, tmp_path, traced):
    data = caption_data()
    train(ContrastiveRecipe, contrastive_config(data, tmp_path / "eager", steps=20))
    train(ContrastiveRecipe, contrastive_config(data, tmp_path / "compiled", steps=20,
                                                compile=True))
    assert traced["compiled"][0].__func__ is ContrastiveRecipe.loss
    assert curve(tmp_path / "compiled") == pytest.approx(curve(tmp_path / "eager"), rel=1e-4)


def test_cuda_graphs_capture_the_compiled_loss_and_mark_every_step(drift_sequences, tmp_path,
                                                                  traced, monkeypatch):
    marks = []
    monkeypatch.setattr(compiling.torch.compiler, "cudagraph_mark_step_begin",
                        lambda: marks.append(1))
    overrides = dict(steps=25, arch="gru", layers=1, dropout=0.0, precision="fp32")
    train(LVMRecipe, lvm_config(drift_sequences, tmp_path / "eager", **overrides))
    assert marks == []
    train(LVMRecipe, lvm_config(drift_sequences, tmp_path / "graphs", compile=True,
                                cuda_graphs=True, **overrides))
    assert traced["modes"] == ["reduce-overhead"]
    assert len(marks) == 25  # before every step
    assert curve(tmp_path / "graphs") == pytest.approx(curve(tmp_path / "eager"), rel=1e-4)


def test_cuda_graphs_need_compile(drift_sequences, tmp_path):
    with pytest.raises(ValueError,
                       match="cuda_graphs captures the compiled loss: set compile=True too"):
        lvm_config(drift_sequences, tmp_path / "run", cuda_graphs=True).check()


def test_several_processes_compile_the_model_alone(monkeypatch):
    compiled = []
    monkeypatch.setattr(compiling.torch, "compile", lambda fn: compiled.append(fn) or fn)
    model = torch.nn.Linear(2, 2)
    recipe = LVMRecipe.__new__(LVMRecipe)
    assert compiling.compile_for_training(recipe, model, distributed=True) is model
    assert compiled == [model] and "loss" not in vars(recipe)


def test_the_unrolled_gru_is_what_compile_sees(monkeypatch):
    calls = []
    real = lvm_model.rnn_unrolled
    monkeypatch.setattr(lvm_model, "rnn_unrolled", lambda rnn, x: calls.append(x) or real(rnn, x))
    backbone = RNNBackbone("gru", 8, 2, dropout=0.0).eval()
    x = torch.randn(3, 4, 8)
    torch._dynamo.reset()
    with torch._dynamo.config.patch(allow_rnn=True):
        out = torch.compile(backbone, backend="eager")(x)
    assert len(calls) == 1
    torch.testing.assert_close(out, backbone(x))
    # eager keeps nn.GRU (cuDNN on a GPU)
    backbone(x)
    assert len(calls) == 1


def test_the_cli_refuses_cuda_graphs_without_compile(drift_sequences, tmp_path):
    from click.testing import CliRunner

    from uncollapse.cli import main

    result = CliRunner().invoke(main, ["train", "lvm", "--sequences", str(drift_sequences),
                                       "--steps", "5", "--cuda-graphs", "--device", "cpu",
                                       "--quiet", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "--cuda-graphs captures the compiled loss: set --compile too" in result.output
    assert not (tmp_path / "run").exists()


def test_cuda_graphs_are_for_one_process_and_rank_0_says_so(caplog):
    with caplog.at_level("WARNING", logger="uncollapse"):
        assert compiling.use_cuda_graphs(True, distributed=False, is_main=True) is True
        assert compiling.use_cuda_graphs(False, distributed=True, is_main=True) is False
        assert caplog.messages == []
        assert compiling.use_cuda_graphs(True, distributed=True, is_main=False) is False
        assert caplog.messages == []  # other ranks keep quiet
        assert compiling.use_cuda_graphs(True, distributed=True, is_main=True) is False
    assert caplog.messages == ["--cuda-graphs applies to one process: under torchrun the model "
                               "is compiled alone, without CUDA graphs"]
