"""``uncollapse validate attributes`` and ``validate flips``."""

from __future__ import annotations

import contextlib

import click

from uncollapse.cli_paths import InputPath
from uncollapse.cli_ranges import NON_NEGATIVE_INT, SEED, check_order, count
from uncollapse.cli_report import report_options

__all__ = ["COMMANDS", "validate_attributes_command", "validate_flips_command"]


def _names(value: str | None) -> list[str] | None:
    return [name.strip() for name in value.split(",") if name.strip()] if value else None


@click.command("attributes")
@click.argument("table", type=InputPath(missing_ok=True))
@click.option("--attributes", help="Comma-separated attributes you flip; their combinations "
                                   "are checked (default: all, if there are at most 8).")
@click.option("--min-rows", type=count(1), default=8, show_default=True,
              help="ATTR_COMBINATION_TOO_SMALL below this many rows per combination (use the "
                   "per_group of your batch sampler).")
@report_options
def validate_attributes_command(table, attributes, min_rows):
    """Check an attribute table: 0/1 values, constant attributes, combinations too small for a
    prototype, and IDENTITY_LEAKAGE (one person in two splits).

    Example:
        uncollapse validate attributes attrs.parquet --attributes Smiling,Male,Eyeglasses
        uncollapse validate attributes attrs.parquet --min-rows 16 --format json
    """
    from uncollapse.validators.attributes.rules import validate_attributes

    return validate_attributes(table, attributes=_names(attributes), min_rows=min_rows)


@contextlib.contextmanager
def user_code(spec: str):
    """Run the code of a ``--dataset`` module: its ``sys.exit`` or exception is exit 2 naming
    the module, never the exit code of this command (``sys.exit(0)`` would read as valid)."""
    from uncollapse.errors import ToolError

    try:
        yield
    except ToolError:
        raise
    except SystemExit as exc:
        raise ToolError(f"--dataset {spec}: the module called sys.exit({exc.code!r}) while it "
                        "was imported or read; a dataset module must not exit (move the "
                        "script part under `if __name__ == \"__main__\":`)") from exc
    except Exception as exc:
        raise ToolError(f"--dataset {spec}: the module failed while it was imported or read "
                        f"({type(exc).__name__}: {exc}); fix it, or run it with python to see "
                        "the traceback") from exc


def _load_dataset(spec: str):
    """A dataset from ``FILE.py:NAME`` or ``module:NAME``; a callable NAME is called."""
    import importlib
    import importlib.util
    import inspect
    from pathlib import Path

    from uncollapse.errors import ToolError
    from uncollapse.paths import check_input

    location, _, name = spec.rpartition(":")
    if not location or not name:
        raise ToolError(f"--dataset {spec!r}: expected FILE.py:NAME or module:NAME")
    if location.endswith(".py"):
        path = Path(location)
        try:
            check_input(path)
        except ToolError as exc:
            raise ToolError(f"--dataset: {exc}") from exc
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(location)
    if not hasattr(module, name):
        raise ToolError(f"--dataset: {location} has no {name!r}")
    found = getattr(module, name)
    return found() if inspect.isfunction(found) or inspect.isclass(found) else found


@click.command("flips")
@click.option("--table", type=InputPath(),
              help="Attribute table: audit AttributeFlipDataset over it.")
@click.option("--dataset", "dataset_spec",
              help="Audit your own dataset instead: FILE.py:NAME or module:NAME (a dataset, or "
                   "a function returning one, whose items carry source and target attributes).")
@click.option("--attributes", help="Comma-separated attributes to flip (with --table; default: "
                                   "all attribute columns).")
@click.option("--min-flips", type=count(1), default=1, show_default=True)
@click.option("--max-flips", type=count(1), default=2, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--epoch", type=NON_NEGATIVE_INT, default=0, show_default=True,
              help="Epoch to replay.")
@click.option("--batch-size", type=count(1), default=256, show_default=True)
@click.option("--per-group", type=count(1), default=None,
              help="Replay the batches of GroupedBatchSampler over the target combination ids "
                   "with this many rows per combination (default: sequential batches).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@report_options
def validate_flips_command(table, dataset_spec, attributes, min_flips, max_flips, seed, epoch,
                   batch_size, per_group, quiet):
    """Replay an epoch of an attribute-flip augmentation and audit it.

    Reports the share of samples with at least one flip (FLIPS_NOT_ALWAYS_APPLIED unless it is
    1.0), the distribution of flip counts, and target combinations per batch.

    Example:
        uncollapse validate flips --table attrs.parquet --attributes Smiling,Male --max-flips 2
        uncollapse validate flips --dataset my_augment.py:make_dataset
    """
    from uncollapse.errors import ToolError
    from uncollapse.validators.attributes.flip_replay import audit_flip_dataset, audit_flip_table

    check_order("--min-flips", min_flips, "--max-flips", max_flips)
    if (table is None) == (dataset_spec is None):
        raise ToolError("give exactly one of --table (audit AttributeFlipDataset) or --dataset")
    replay = {"seed": seed, "epoch": epoch, "batch_size": batch_size, "per_group": per_group,
              "quiet": quiet}
    if table is not None:
        return audit_flip_table(table, attributes=_names(attributes), min_flips=min_flips,
                                max_flips=max_flips, **replay)
    with user_code(dataset_spec):
        return audit_flip_dataset(_load_dataset(dataset_spec), target=dataset_spec, **replay)


COMMANDS = {"validate": [validate_attributes_command, validate_flips_command]}
