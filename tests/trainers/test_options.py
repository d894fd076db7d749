"""An option's bounds and choices are declared once, on its config field: ``check()`` (the
Python API) and the ``uncollapse train`` options (the command line) both read that declaration,
so they accept and refuse the same values and word the range the same way."""

from __future__ import annotations

import dataclasses
import math

import click
import pytest
from click.testing import CliRunner

from uncollapse.cli import main
from uncollapse.cli_ranges import MAX_COUNT
from uncollapse.families import RECIPES
from uncollapse.trainers.cli import make_train_group
from uncollapse.trainers.config import TrainConfig, new_default, option, range_words
from uncollapse.trainers.contrastive.config import ContrastiveConfig
from uncollapse.trainers.flow.config import FlowConfig
from uncollapse.trainers.lvm.config import LVMConfig
from uncollapse.trainers.slots.config import SlotsConfig

CONFIGS = {entry.name: entry.config_class() for entry in RECIPES}
COMMANDS = make_train_group().commands
BOUNDED = [(name, spec) for name, cls in CONFIGS.items() for spec in dataclasses.fields(cls)
           if "min" in spec.metadata or "max" in spec.metadata]
CHOOSING = [(name, spec) for name, cls in CONFIGS.items() for spec in dataclasses.fields(cls)
            if "choices" in spec.metadata]


def _param(recipe: str, field: str) -> click.Parameter:
    return next(p for p in COMMANDS[recipe].params if p.name == field)


def _outside(metadata, is_int: bool) -> list:
    """The values just outside a declared range."""
    values = []
    if "min" in metadata:
        low = metadata["min"]
        values.append(low if metadata["min_open"] else low - (1 if is_int else 1e-9))
    if metadata.get("max") is not None:
        high = metadata["max"]
        values.append(high if metadata["max_open"] else high + (1 if is_int else 1e-9))
    return values


def test_every_recipe_declares_bounds_and_choices_on_its_fields():
    assert {"contrastive", "lvm", "flow", "slots"} <= set(CONFIGS)
    bounded = {(recipe, spec.name) for recipe, spec in BOUNDED}
    assert {("lvm", "batch_size"), ("lvm", "dropout"), ("flow", "alpha"),
            ("slots", "diversity_warmup"), ("contrastive", "eval_fraction")} <= bounded
    chosen = {(recipe, spec.name): spec.metadata["choices"] for recipe, spec in CHOOSING}
    assert chosen[("lvm", "arch")] == ("gru", "lstm", "transformer", "ssm")
    assert chosen[("slots", "init")] == ("learned", "queries", "spectral", "kmeans")
    assert chosen[("flow", "prototypes")] == ("bank", "batch")
    assert chosen[("contrastive", "precision")] == ("bf16", "fp32")


@pytest.mark.parametrize(("recipe", "spec"), BOUNDED,
                         ids=[f"{r} {s.name}" for r, s in BOUNDED])
def test_the_click_type_is_the_declared_range(recipe, spec):
    kind, metadata = _param(recipe, spec.name).type, spec.metadata
    if isinstance(kind, click.IntRange):
        assert kind.min == metadata["min"] and not metadata["min_open"]
        assert kind.max == metadata.get("max", MAX_COUNT)
    else:
        assert (kind.min, kind.max) == (metadata.get("min"), metadata.get("max"))
        assert kind.min_open == metadata.get("min_open", False)
        assert kind.max_open == metadata.get("max_open", False)


@pytest.mark.parametrize(("recipe", "spec"), BOUNDED,
                         ids=[f"{r} {s.name}" for r, s in BOUNDED])
def test_check_refuses_what_the_command_line_refuses_and_words_it_the_same(recipe, spec):
    cls, param = CONFIGS[recipe], _param(recipe, spec.name)
    is_int = isinstance(param.type, click.IntRange)
    length = {} if spec.name in ("steps", "epochs") else {"steps": 1}  # the run needs one
    for value in _outside(spec.metadata, is_int):
        with pytest.raises(ValueError) as caught:
            cls(**length, **{spec.name: value}).check()
        words = range_words(spec.metadata)
        assert str(caught.value) == f"{spec.name} must be {words}, got {value}"
        with pytest.raises(click.BadParameter) as refused:
            param.type.convert(value, param, None)
        assert f"{param.opts[0]} must be {words}, got {value}" in refused.value.message
    cls(steps=1).check()  # the defaults are inside


@pytest.mark.parametrize(("recipe", "spec"), CHOOSING,
                         ids=[f"{r} {s.name}" for r, s in CHOOSING])
def test_choices_are_one_list_for_check_and_the_command_line(recipe, spec):
    choices = spec.metadata["choices"]
    assert tuple(_param(recipe, spec.name).type.choices) == choices
    with pytest.raises(ValueError) as caught:
        CONFIGS[recipe](steps=1, **{spec.name: "x"}).check()
    assert str(caught.value) == f"{spec.name} must be one of {choices!r}, got 'x'"
    for choice in choices:
        CONFIGS[recipe](steps=1, **{spec.name: choice}).check()


def test_check_refuses_non_finite_numbers_that_compare_false_to_every_bound():
    for value in (math.nan, math.inf):
        with pytest.raises(ValueError, match=f"lr must be a finite number, got {value}"):
            LVMConfig(steps=1, lr=value).check()


def test_a_recipe_default_keeps_the_engine_bounds():
    for cls, name in ((LVMConfig, "batch_size"), (SlotsConfig, "lr"),
                      (SlotsConfig, "warmup_steps"), (SlotsConfig, "weight_decay")):
        ours = {f.name: f for f in dataclasses.fields(cls)}[name]
        base = {f.name: f for f in dataclasses.fields(TrainConfig)}[name]
        assert ours.metadata == base.metadata and ours.default != base.default
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        LVMConfig(steps=1, batch_size=0).check()
    assert new_default("batch_size", 8).metadata["min"] == 1


def test_cross_field_rules_stay_with_their_recipe():
    with pytest.raises(ValueError, match="give steps or epochs, not both"):
        ContrastiveConfig(steps=1, epochs=1.0).check()
    with pytest.raises(ValueError, match=r"need 1 <= min_flips \(2\) <= max_flips \(1\)"):
        FlowConfig(steps=1, min_flips=2, max_flips=1).check()
    with pytest.raises(ValueError, match=r"hidden \(30\) must be a multiple of heads \(8\)"):
        LVMConfig(steps=1, arch="transformer", hidden=30).check()


def test_option_takes_one_lower_and_one_upper_bound():
    with pytest.raises(TypeError, match="at most one lower bound"):
        option(1, at_least=0, above=0)
    assert range_words(option(0.5, above=0, at_most=1).metadata) == "in (0, 1]"
    assert range_words(option(0.5, below=1).metadata) == "less than 1"


def test_the_command_line_refuses_an_out_of_range_value_before_reading_anything(tmp_path):
    result = CliRunner().invoke(main, ["train", "slots", "--scenes", str(tmp_path / "none.npz"),
                                       "--diversity-warmup", "-1", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "--diversity-warmup must be at least 0, got -1" in result.output
    assert not (tmp_path / "r").exists()
