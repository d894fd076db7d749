"""``minutes``: a run's length in wall-clock minutes of training, read off the engine's clock
(replaced here by a fake one that advances a fixed time per reading, so no test waits or
asserts on real time)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import uncollapse.trainers.engine as engine
from uncollapse.data.attributes.synthetic import (
    synthetic_attribute_embeddings,
    write_attribute_table,
)
from uncollapse.trainers.flow.config import FlowConfig
from uncollapse.trainers.flow.recipe import FlowRecipe
from uncollapse.trainers.run_dir import RunDir


class Flow(FlowRecipe):
    """The flow recipe with a one-number evaluation: these tests are about the loop."""

    def evaluate(self, model):
        return {"rows": len(self.eval_rows_np)}, {}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("budget")
    embeddings, table = synthetic_attribute_embeddings(rows=400, dim=16, attributes=3,
                                                       identities=20, seed=0)
    np.save(tmp / "embeddings.npy", embeddings)
    write_attribute_table(table, tmp / "attributes.parquet")
    return tmp


def fake_clock(monkeypatch, seconds_per_reading: float) -> list[float]:
    readings: list[float] = []
    ticks = itertools.count()

    def clock() -> float:
        readings.append(next(ticks) * seconds_per_reading)
        return readings[-1]

    monkeypatch.setattr(engine, "training_clock", clock)
    return readings


def config(data, out, **overrides) -> FlowConfig:
    values = dict(out=str(out), embeddings=str(data / "embeddings.npy"),
                  attributes=str(data / "attributes.parquet"), batch_size=32, per_group=4,
                  hidden=16, lr=1e-2, warmup_steps=2, device="cpu", quiet=True, log_every=2,
                  monitor_every=1000, monitor_warmup=1000)
    values.update(overrides)
    return FlowConfig(**values)


def test_a_run_of_minutes_stops_when_its_clock_says_so(data, tmp_path, monkeypatch):
    # the clock is read at the start and after every step: 3 s a reading
    readings = fake_clock(monkeypatch, 3.0)
    result = engine.train(Flow, config(data, tmp_path / "run", minutes=0.5))
    assert readings[-1] == 30.0 and result.step == 10  # 10 readings after the start
    records = RunDir(tmp_path / "run").read_metrics()
    assert records[-1]["step"] == 10
    # the cosine decay ran over the budget: down to near its floor by the last step
    lrs = [r["lr"] for r in records]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.14 * 1e-2
    assert (tmp_path / "run" / "eval.json").exists()


def test_the_same_budget_on_a_slower_clock_is_fewer_steps(data, tmp_path, monkeypatch):
    fake_clock(monkeypatch, 10.0)
    slow = engine.train(Flow, config(data, tmp_path / "slow", minutes=0.5))
    assert slow.step == 3  # readings at 10, 20, 30 s: steps 1, 2, 3


def test_minutes_cap_a_run_of_steps_and_steps_cap_a_run_of_minutes(data, tmp_path,
                                                                    monkeypatch):
    fake_clock(monkeypatch, 3.0)
    capped = engine.train(Flow, config(data, tmp_path / "a", minutes=0.5, steps=1000))
    assert capped.step == 10
    fake_clock(monkeypatch, 3.0)
    short = engine.train(Flow, config(data, tmp_path / "b", minutes=0.5, steps=8))
    assert short.step == 8
    lrs = [r["lr"] for r in RunDir(tmp_path / "b").read_metrics()]
    # the steps end first: the decay runs over those 8 (step 7 is 5/6 of it after warm-up)
    assert lrs[-1] == pytest.approx(1e-2 * 0.1 + 0.5 * 1e-2 * 0.9 * (1 + np.cos(np.pi * 5 / 6)))
