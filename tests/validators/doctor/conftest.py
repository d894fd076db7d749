"""Fixtures of the doctor's tests: the collapse zoo's module (its input builders and plain-torch
runs of "another framework") and one workshop of inputs per test session."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ZOO = ROOT / "benchmarks" / "collapse_zoo.py"


def load_zoo():
    """``benchmarks/collapse_zoo.py`` as a module (benchmarks/ is not a package)."""
    if "collapse_zoo" in sys.modules:
        return sys.modules["collapse_zoo"]
    spec = importlib.util.spec_from_file_location("collapse_zoo", ZOO)
    module = importlib.util.module_from_spec(spec)
    sys.modules["collapse_zoo"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The runs here are tiny: one thread each, as the zoo runs them (several threads per
    process on a shared machine only wait for each other)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def zoo():
    return load_zoo()


@pytest.fixture(scope="session")
def workshop(zoo, tmp_path_factory):
    return zoo.Workshop(tmp_path_factory.mktemp("doctor-zoo"))
