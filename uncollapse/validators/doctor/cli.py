"""``uncollapse doctor``: name the cause of a collapsed run, with its evidence and its fix."""

from __future__ import annotations

import click

from uncollapse.cli_paths import InputPath, OutputPath
from uncollapse.cli_ranges import count
from uncollapse.cli_report import quiet_option, report_options

__all__ = ["COMMANDS", "RUN_FILES", "doctor_command"]

RUN_FILES = frozenset({"config.json", "preflight.json", "metrics.jsonl", "eval.json",
                       "projection.npz", "checkpoints", "tensorboard"})
"""What the doctor reads in a run directory: a report may be written anywhere else in it."""

_FILE = InputPath()


@click.command("doctor")
@click.argument("run_dir", required=False,
                type=InputPath(file_okay=False, dir_okay=True, reads_inside=RUN_FILES))
@click.option("--metrics", type=InputPath(dir_okay=True),
              help="Logged metrics of a run of any framework: JSONL, CSV, or a TensorBoard "
                   "log directory.")
@click.option("--map", "mapping", multiple=True, metavar="NAME=COLUMN,...",
              help="The run's names of the metrics the doctor reads (loss, val_loss, "
                   "positives_per_row, world_size, flip_rate, step, ...), e.g. "
                   "loss=train/loss,val_loss=valid/loss.")
@click.option("--captions", type=_FILE, help="The run's caption table (Parquet or CSV).")
@click.option("--sequences", type=_FILE, help="The run's sequence file (NPZ).")
@click.option("--attributes", type=_FILE, help="The run's attribute table (Parquet or CSV).")
@click.option("--scenes", type=_FILE, help="The run's scene file (NPZ).")
@click.option("--embeddings", type=_FILE,
              help="The model's outputs: .npy [N, D] (slots [N, S, D]) or .npz with pred and "
                   "optional target, labels.")
@click.option("--flips", type=_FILE,
              help=".npz with source_attributes and target_attributes [N, A] of one epoch of "
                   "an attribute-flip augmentation.")
@click.option("--batch-size", type=count(2), help="The run's batch size (default: its "
              "config.json, else 256).")
@click.option("--world-size", type=count(1), help="Ranks the run trained on (default: its "
              "config.json or a logged world_size, else 1).")
@click.option("--exclude-window", type=count(0), help="The hard-negative exclusion window "
              "(default: config.json, else 1).")
@click.option("--html", "html_path", type=OutputPath(),
              help="Also write the verdict as an HTML page with the curves that show the "
                   "evidence (extra: plots).")
@quiet_option
@report_options
def doctor_command(run_dir, metrics, mapping, captions, sequences, attributes, scenes,
                   embeddings, flips, batch_size, world_size, exclude_window, html_path, quiet):
    """Diagnose a training run: rank the causes its artifacts and data point at (no positives
    in a batch, positives split across ranks, no document ids, no hard negatives, mean-vector,
    dimensional or slot collapse, unit-norm decoder inputs, a negative loss term, partial
    augmentation, prototypes from outputs, split leakage, overfitting, divergence), each with
    its evidence, the check that rules it out, the fix and a confidence.

    RUN_DIR is a run of `uncollapse train`; the data files its config.json names are checked
    when they are still there. For a run of another framework give --metrics and its data
    files. Exit 1 when a cause is found, 0 for a healthy run, 2 when it cannot run.

    Example:
        uncollapse doctor runs/contrastive
        uncollapse doctor runs/lvm --html runs/lvm/doctor.html
        uncollapse doctor --metrics logs/train.csv --map loss=train/loss,val_loss=val/loss
        uncollapse doctor --metrics tb_logs/ --captions captions.parquet --world-size 8
    """
    from uncollapse.progress import status
    from uncollapse.validators.doctor.diagnose import diagnose_run

    ctx = click.get_current_context()
    if run_dir is None and metrics is None and not any(
            (captions, sequences, attributes, scenes, embeddings, flips)):
        raise click.UsageError("give a run directory, or --metrics FILE (and data files such "
                               "as --captions) for a run of another framework", ctx=ctx)
    with status(f"diagnosing {run_dir or metrics or 'the data'}", quiet=quiet):
        report = diagnose_run(run_dir, metrics=metrics, mapping=",".join(mapping) or None,
                              captions=captions, sequences=sequences, attributes=attributes,
                              scenes=scenes, embeddings=embeddings, flips=flips,
                              batch_size=batch_size, world_size=world_size,
                              exclude_window=exclude_window)
    if html_path:
        from uncollapse.validators.doctor.report_html import write_html

        write_html(report, html_path)
        click.echo(f"wrote {html_path}", err=True)
    return report


COMMANDS = {"": [doctor_command]}
