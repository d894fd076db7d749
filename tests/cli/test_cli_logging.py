"""Library messages go through the logger ``uncollapse``: the command line prints them when
nothing else receives them, and standard logging configuration silences or redirects them."""

from __future__ import annotations

import logging

import click
import pytest
from click.testing import CliRunner

from uncollapse.cli import LOGGER, make_main, print_library_messages


@pytest.fixture
def unconfigured_logging(monkeypatch):
    """A function that gives ``uncollapse`` logging as a fresh interpreter has it: no handler
    receives its records. Call it in the test: pytest attaches its own handlers to the root
    and to every non-propagating logger when the test starts."""

    def unconfigure() -> logging.Logger:
        logger = logging.getLogger(LOGGER)
        monkeypatch.setattr(logger, "handlers", [])
        monkeypatch.setattr(logger, "propagate", False)
        return logger

    return unconfigure


def _main_with_a_warning():
    main = make_main()

    @main.command("speak")
    def speak():
        logging.getLogger("uncollapse.cache.store").warning("entry 1f2e is corrupt; rebuilding")
        click.echo("done")

    return main


def test_the_command_line_prints_library_warnings_on_stderr(unconfigured_logging):
    unconfigured_logging()
    result = CliRunner().invoke(_main_with_a_warning(), ["speak"])
    assert result.exit_code == 0
    assert result.stdout == "done\n"  # the report's stream stays clean
    assert result.stderr == "warning: entry 1f2e is corrupt; rebuilding\n"


def test_standard_logging_configuration_silences_them(unconfigured_logging, request):
    logger = unconfigured_logging()
    logger.setLevel(logging.ERROR)
    request.addfinalizer(lambda: logger.setLevel(logging.NOTSET))
    result = CliRunner().invoke(_main_with_a_warning(), ["speak"])
    assert result.exit_code == 0
    assert result.stderr == ""


def test_a_configured_handler_receives_them_instead(unconfigured_logging):
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    unconfigured_logging().addHandler(Keep())
    result = CliRunner().invoke(_main_with_a_warning(), ["speak"])
    assert result.exit_code == 0
    assert result.stderr == ""
    assert records == ["entry 1f2e is corrupt; rebuilding"]


def test_the_stderr_handler_is_installed_once(unconfigured_logging):
    logger = unconfigured_logging()
    print_library_messages()
    print_library_messages()
    assert len(logger.handlers) == 1
