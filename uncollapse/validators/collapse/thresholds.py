"""When each finding of ``diagnose_embeddings`` fires: ``Thresholds``, its defaults read by
``uncollapse diagnose embeddings``' options too. No torch here, so the CLI can read them at
start."""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["Thresholds"]


@dataclass(frozen=True)
class Thresholds:
    """When each finding fires. Every field is an option of ``diagnose_embeddings``.

    Attributes:
        mean_vector_margin: MEAN_VECTOR_COLLAPSE when ``cos(pred, target)`` exceeds
            ``cos(mean target, target)`` by less than this (default 0.02).
        min_rank_fraction: DIMENSIONAL_COLLAPSE when the RankMe effective rank is below this
            share of ``min(rows, dim)`` (default 0.05: rank 38 of 768).
        min_rank_ratio: DIMENSIONAL_COLLAPSE when, with targets, the outputs' effective rank
            is below this share of the targets' (default 0.25).
        unit_norm_tol: a row counts as unit-norm when ``|‖x‖ - 1| <= unit_norm_tol``
            (default 0.01).
        unit_norm_share: UNIT_NORM_OUTPUT when at least this share of outputs is unit-norm
            while fewer than half the targets are (default 0.99).
        min_std_ratio: MOMENT_MISMATCH when the median per-dimension std ratio
            (outputs / targets) is below this (default 0.5) ...
        max_std_ratio: ... or above this (default 2.0) ...
        max_mean_shift: ... or the median per-dimension mean shift, in target standard
            deviations, is above this (default 0.5).
        min_relative_spread: POINT_COLLAPSE when the total variance is below this share of the
            mean squared norm (default 1e-3: every output is the same point).
        min_label_spread: POINT_COLLAPSE, with labels and no targets, when the outputs' mean
            squared distance to their label's mean is below this share of their mean squared
            norm (``label_spread``; default 1e-3: within-label cosine about 0.999). A healthy,
            well-separated classifier keeps far more spread than that, whatever its silhouette.
        min_label_spread_ratio: POINT_COLLAPSE, with labels and targets, when the outputs'
            ``label_spread`` is below this share of the targets' (default 0.01: each label's
            outputs are one point while its targets still differ). Targets that are themselves
            one point per label never trigger it.
        min_slot_spread: SLOTS_IDENTICAL when the within-set spread ratio of [N, S, D] slots is
            below this (default 0.1).
    """

    mean_vector_margin: float = 0.02
    min_rank_fraction: float = 0.05
    min_rank_ratio: float = 0.25
    unit_norm_tol: float = 0.01
    unit_norm_share: float = 0.99
    min_std_ratio: float = 0.5
    max_std_ratio: float = 2.0
    max_mean_shift: float = 0.5
    min_relative_spread: float = 1e-3
    min_label_spread: float = 1e-3
    min_label_spread_ratio: float = 0.01
    min_slot_spread: float = 0.1

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
