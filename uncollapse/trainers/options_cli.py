"""The accepted range of each numeric option of ``uncollapse train RECIPE``.

The config's ``check()`` guards the Python API; these make the command line refuse an
impossible value (NaN, a negative count, a seed numpy cannot take) while parsing, before any
file is read or any model is built.
"""

from __future__ import annotations

from uncollapse.cli_ranges import (
    FRACTION,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    SEED,
    SHARE,
    count,
)

FIELD_RANGES = {
    "steps": count(1), "epochs": POSITIVE, "batch_size": count(1), "lr": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE, "warmup_steps": NON_NEGATIVE_INT, "min_lr_ratio": SHARE,
    "grad_clip": NON_NEGATIVE, "seed": SEED, "log_every": count(1),
    "checkpoint_every": count(1), "monitor_every": count(1), "monitor_warmup": NON_NEGATIVE_INT,
    "per_group": count(1), "eval_fraction": FRACTION, "hidden": count(1), "dim": count(1),
    "temperature": POSITIVE, "layers": count(1), "heads": count(1), "dropout": FRACTION,
    "max_per_doc": count(1), "exclude_window": NON_NEGATIVE_INT,
    "infonce_weight": NON_NEGATIVE, "moment_weight": NON_NEGATIVE,
    "variance_weight": NON_NEGATIVE, "mse_weight": NON_NEGATIVE, "cosine_weight": NON_NEGATIVE,
    "variance_ratio": NON_NEGATIVE, "min_flips": count(1), "max_flips": count(1),
    "flow_steps": count(1), "alpha": POSITIVE, "identity_weight": NON_NEGATIVE,
    "divergence_weight": NON_NEGATIVE, "curl_weight": NON_NEGATIVE, "slots": count(1),
    "slot_dim": count(1), "iterations": count(1), "channels": count(1),
    "diversity_weight": NON_NEGATIVE, "diversity_warmup": NON_NEGATIVE,
}
"""Config field -> Click type; a numeric field missing here fails tests/test_exit_options.py."""

PORT = count(1, 65535)
