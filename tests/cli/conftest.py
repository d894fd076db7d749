"""Fixtures of the command-line tests."""

from __future__ import annotations

import re

import pytest


@pytest.fixture(scope="session")
def raw_error() -> re.Pattern:
    """What a user must never see in a message: an exception class name, a traceback, an errno,
    the debug switch, or the insides of Python, numpy or a Rust library (polars)."""
    return re.compile(r"\b[A-Z]\w*(Error|Exception)\b|Traceback|\bErrno\b|UNCOLLAPSE_DEBUG|"
                      r"NoneType|object has no attribute|unsized object|Option::unwrap")
