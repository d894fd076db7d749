"""CollapseMonitor and LossGuard: what a trainer calls during a run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from uncollapse.validators.collapse import (
    CollapseError,
    CollapseMonitor,
    CollapseWarning,
    LossGuard,
    LossGuardError,
    Thresholds,
)


def batch(seed: int, n: int = 256, d: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    targets = torch.randn(n, d, generator=generator)
    outputs = targets + 0.3 * torch.randn(n, d, generator=generator)
    return outputs, targets


def collapsed(targets: torch.Tensor) -> torch.Tensor:
    return targets.mean(dim=0, keepdim=True).expand_as(targets).clone()


# --------------------------------------------------------------------------------- monitor


def test_monitor_measures_every_n_steps_and_returns_the_metrics():
    monitor = CollapseMonitor(every=10)
    outputs, targets = batch(0)
    assert monitor(3, outputs, targets) == {}
    values = monitor(20, outputs, targets)
    assert values["effective_rank"] > 20 and values["mean_vector_margin"] > 0.3
    assert all(isinstance(v, float) for v in values.values())
    assert [step for step, _ in monitor.history] == [20]
    assert monitor.last_report.target == "step 20" and monitor.last_report.ok


def test_monitor_raises_naming_the_step_and_code():
    monitor = CollapseMonitor(every=5, warmup=0, on_finding="raise")
    _, targets = batch(1)
    with pytest.raises(CollapseError, match="step 15.*MEAN_VECTOR_COLLAPSE") as caught:
        monitor.update(15, collapsed(targets), targets)
    assert "MEAN_VECTOR_COLLAPSE" in caught.value.codes and caught.value.step == 15
    assert not caught.value.report.ok


def test_monitor_can_warn_instead_and_still_returns_the_metrics():
    monitor = CollapseMonitor(every=1, warmup=0, on_finding="warn")
    _, targets = batch(2)
    with pytest.warns(CollapseWarning, match="MEAN_VECTOR_COLLAPSE"):
        values = monitor(7, collapsed(targets), targets)
    assert values["mean_vector_margin"] == pytest.approx(0.0, abs=1e-5)


def test_monitor_acts_on_warnings_only_when_asked():
    outputs, targets = batch(3)
    shrunk = 0.3 * outputs
    assert CollapseMonitor(every=1)(0, shrunk, targets)["std_ratio_median"] < 0.5
    strict = CollapseMonitor(every=1, warmup=0, severities=("error", "warning"))
    with pytest.raises(CollapseError, match="MOMENT_MISMATCH"):
        strict(0, shrunk, targets)


def test_monitor_thresholds_are_passed_through():
    outputs, targets = batch(4)
    monitor = CollapseMonitor(every=1, warmup=0, thresholds=Thresholds(mean_vector_margin=2.0))
    with pytest.raises(CollapseError, match="MEAN_VECTOR_COLLAPSE"):
        monitor(0, outputs, targets)


def test_monitor_leaves_the_autograd_graph_alone():
    outputs, targets = batch(5)
    outputs.requires_grad_(True)
    head = outputs * 2
    CollapseMonitor(every=1)(0, head, targets)
    head.sum().backward()
    assert torch.equal(outputs.grad, torch.full_like(outputs, 2.0))


def test_monitor_takes_slots_and_numpy():
    slots = np.repeat(np.random.default_rng(6).normal(size=(32, 1, 16)), 4, axis=1)
    with pytest.raises(CollapseError, match="SLOTS_IDENTICAL"):
        CollapseMonitor(every=1, warmup=0)(0, slots)


def test_monitor_gives_no_verdict_during_the_warm_up_but_records_the_metrics():
    torch.manual_seed(0)
    targets = torch.randn(256, 32)
    untrained = torch.nn.Linear(32, 32)(targets + 0.1 * torch.randn_like(targets)).detach()
    monitor = CollapseMonitor(every=200, on_finding="raise")  # the default warm-up: 1000 steps
    assert monitor.warmup == 1000
    values = monitor(0, untrained, targets)  # an untrained model: a finding, no verdict yet
    assert "MEAN_VECTOR_COLLAPSE" in monitor.last_report.codes()
    assert values["mean_vector_margin"] < 0.02
    monitor(800, untrained, targets)
    assert [step for step, _ in monitor.history] == [0, 800]
    with pytest.raises(CollapseError, match="step 1000.*MEAN_VECTOR_COLLAPSE"):
        monitor(1000, untrained, targets)
    with pytest.raises(CollapseError, match="step 0"):
        CollapseMonitor(every=200, warmup=0)(0, untrained, targets)


@pytest.mark.parametrize("kwargs", [{"every": 0}, {"on_finding": "ignore"}, {"warmup": -1}])
def test_monitor_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        CollapseMonitor(**kwargs)


# ------------------------------------------------------------------------------ loss guard


def test_loss_guard_passes_healthy_terms():
    guard = LossGuard({"diversity": 0.0})
    assert guard(1, loss=torch.tensor(0.7), diversity=torch.tensor(0.0), mse=0.2) is None


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_loss_guard_stops_on_a_non_finite_term(value):
    guard = LossGuard()
    with pytest.raises(LossGuardError, match=r"step 42: loss term 'mse' is") as caught:
        guard(42, loss=torch.tensor(1.0), mse=torch.tensor(value))
    assert caught.value.term == "mse" and caught.value.step == 42 and caught.value.bound is None
    assert (math.isnan(caught.value.value) if math.isnan(value) else caught.value.value == value)


def test_loss_guard_stops_on_a_term_below_its_lower_bound():
    guard = LossGuard({"diversity": 0.0})
    with pytest.raises(LossGuardError, match=r"step 7: loss term 'diversity' = -0.03 is below "
                                             r"its lower bound 0") as caught:
        guard(7, loss=torch.tensor(0.5), diversity=torch.tensor(-0.03))
    assert caught.value.value == pytest.approx(-0.03) and caught.value.bound == 0.0


def test_loss_guard_allows_rounding_below_a_bound_and_ignores_undeclared_terms():
    guard = LossGuard({"diversity": 0.0}, tolerance=1e-6)
    guard(0, diversity=-1e-8, contrastive=-5.0)
    with pytest.raises(LossGuardError):
        LossGuard({"diversity": 0.0}, tolerance=0.0)(0, diversity=-1e-8)


def test_loss_guard_checks_only_every_nth_step():
    guard = LossGuard(every=10)
    guard(5, loss=math.nan)
    with pytest.raises(LossGuardError):
        guard(10, loss=math.nan)


def test_loss_guard_rejects_a_non_scalar_term():
    with pytest.raises(ValueError, match="scalars"):
        LossGuard()(0, loss=torch.ones(3))
