"""diagnose_embeddings: each finding code fires on its case and stays quiet on a healthy one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from uncollapse.errors import ToolError
from uncollapse.validators.codes import all_codes
from uncollapse.validators.collapse import Thresholds, diagnose_embeddings


def noisy(x: np.ndarray, seed: int, scale: float) -> np.ndarray:
    return x + np.random.default_rng(seed).normal(0, scale, x.shape).astype(np.float32)


def errors(report) -> set[str]:
    return {f.code for f in report.errors}


@pytest.fixture(scope="module")
def captions(coco_embeddings):
    """MiniLM embeddings of real COCO captions, their image ids, and each caption's partner:
    the next caption of the same image (a realistic, healthy "prediction" of a caption)."""
    embeddings, image_ids = coco_embeddings
    n = len(image_ids)
    starts = np.r_[0, np.flatnonzero(np.diff(image_ids)) + 1]
    sizes = np.diff(np.r_[starts, n])
    group = np.repeat(np.arange(len(starts)), sizes)
    position = np.arange(n) - starts[group]
    partner = starts[group] + (position + 1) % sizes[group]
    return embeddings, image_ids, partner


# -------------------------------------------------------------------- real embeddings


def test_committed_embeddings_are_real_minilm_vectors(captions):
    embeddings, image_ids, _ = captions
    assert embeddings.shape == (2003, 384) and embeddings.dtype == np.float16
    assert len(np.unique(image_ids)) == 400
    norms = np.linalg.norm(embeddings.astype(np.float32), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=2e-3)


def test_healthy_real_sentence_embeddings_produce_no_finding(captions):
    embeddings, image_ids, partner = captions
    report = diagnose_embeddings(embeddings[partner], embeddings, labels=image_ids,
                                 groups=image_ids)
    assert report.findings == [] and report.ok
    stats = report.stats
    assert stats["effective_rank"] > 200
    assert stats["mean_vector_margin"] > 0.25
    assert stats["contrastive_accuracy"] > 0.95
    assert stats["recall@1"] == 1.0  # the target's own group always holds the partner
    assert 0.05 < stats["silhouette"] < 0.5
    json.loads(report.to_json())


def test_real_embeddings_alone_produce_no_finding(captions):
    embeddings, image_ids, _ = captions
    report = diagnose_embeddings(torch.from_numpy(embeddings), labels=image_ids)
    assert report.findings == []
    assert report.stats["rows"] == 2003 and report.stats["dim"] == 384


def test_real_embeddings_predicted_by_their_mean_collapse(captions):
    embeddings, image_ids, _ = captions
    targets = embeddings.astype(np.float32)
    pred = noisy(np.tile(targets.mean(axis=0), (len(targets), 1)), 1, 1e-3)
    report = diagnose_embeddings(pred, targets, groups=image_ids)
    assert {"MEAN_VECTOR_COLLAPSE", "DIMENSIONAL_COLLAPSE"} <= errors(report)
    assert report.stats["contrastive_accuracy"] == pytest.approx(0.5, abs=0.02)


def test_a_threshold_is_an_option(captions):
    embeddings, _, partner = captions
    report = diagnose_embeddings(embeddings[partner], embeddings,
                                 thresholds=Thresholds(mean_vector_margin=0.5))
    assert errors(report) == {"MEAN_VECTOR_COLLAPSE"}


# ----------------------------------------------------------------- each code, both ways


def test_mean_vector_collapse_fires_on_the_mean_and_not_on_a_good_predictor(gaussian):
    targets = gaussian(1, 1000, 64) + 0.5
    collapsed = noisy(np.tile(targets.mean(axis=0), (1000, 1)), 2, 0.05)
    assert "MEAN_VECTOR_COLLAPSE" in errors(diagnose_embeddings(collapsed, targets))
    assert "MEAN_VECTOR_COLLAPSE" not in errors(diagnose_embeddings(noisy(targets, 3, 0.5),
                                                                    targets))


def test_dimensional_collapse_fires_on_low_rank_outputs_and_not_on_full_rank(gaussian):
    rng = np.random.default_rng(4)
    low_rank = (rng.normal(size=(800, 3)) @ rng.normal(size=(3, 128))).astype(np.float32)
    report = diagnose_embeddings(low_rank)
    assert errors(report) == {"DIMENSIONAL_COLLAPSE"}
    assert report.stats["effective_rank"] <= 3.01
    assert diagnose_embeddings(gaussian(5, 800, 128)).findings == []


def test_dimensional_collapse_against_the_targets_rank(gaussian):
    rng = np.random.default_rng(6)
    targets = gaussian(7, 2000, 256)
    basis, _ = np.linalg.qr(rng.normal(size=(256, 20)))
    projected = (targets @ basis @ basis.T).astype(np.float32)  # 20 of 256 directions kept
    report = diagnose_embeddings(projected, targets)
    assert report.stats["effective_rank_fraction"] > Thresholds().min_rank_fraction
    assert "DIMENSIONAL_COLLAPSE" in errors(report)
    assert "DIMENSIONAL_COLLAPSE" not in errors(diagnose_embeddings(noisy(targets, 8, 0.3),
                                                                    targets))


def test_unit_norm_output_fires_when_only_the_outputs_are_normalised(gaussian):
    targets = gaussian(9, 500, 32, scale=3.0)
    pred = noisy(targets, 10, 0.3)
    unit_pred = pred / np.linalg.norm(pred, axis=1, keepdims=True)
    report = diagnose_embeddings(unit_pred, targets)
    assert "UNIT_NORM_OUTPUT" in errors(report)
    assert report.stats["unit_norm_share"] == 1.0 and report.stats["target_unit_norm_share"] == 0
    assert "UNIT_NORM_OUTPUT" not in errors(diagnose_embeddings(pred, targets))
    unit_targets = targets / np.linalg.norm(targets, axis=1, keepdims=True)
    assert diagnose_embeddings(unit_pred, unit_targets).findings == []


def test_moment_mismatch_warns_on_shrunk_outputs_and_names_the_worst_dimensions(gaussian):
    targets = gaussian(11, 1000, 16)
    shrunk = 0.3 * noisy(targets, 12, 0.1)
    report = diagnose_embeddings(shrunk, targets)
    assert report.codes() == ["MOMENT_MISMATCH"]
    assert report.ok and report.exit_code(strict=True) == 1
    finding = report.findings[0]
    assert finding.severity == "warning" and finding.count == 16
    assert all(row["std_ratio"] < 0.5 for row in finding.examples)
    shifted = noisy(targets, 13, 0.1) + 2.0
    assert diagnose_embeddings(shifted, targets).codes() == ["MOMENT_MISMATCH"]
    assert diagnose_embeddings(noisy(targets, 14, 0.1), targets).findings == []


def test_point_collapse_fires_when_every_output_is_one_point(gaussian):
    point = noisy(np.tile(gaussian(15, 1, 32) + 1.0, (300, 1)), 16, 1e-5)
    report = diagnose_embeddings(point)
    assert "POINT_COLLAPSE" in errors(report)
    assert report.stats["uniformity"] == pytest.approx(0.0, abs=1e-3)


def test_point_collapse_fires_when_each_label_is_one_point_and_not_on_spread_clusters(gaussian):
    centres = gaussian(17, 10, 32)
    labels = np.repeat(np.arange(10), 30)
    report = diagnose_embeddings(noisy(centres[labels], 18, 1e-4), labels=labels)
    assert errors(report) == {"POINT_COLLAPSE"}
    assert report.stats["label_spread"] < Thresholds().min_label_spread
    spread = noisy(centres[labels], 18, 0.3)
    assert diagnose_embeddings(spread, labels=labels).findings == []


def test_healthy_well_separated_labels_are_not_point_collapse(gaussian):
    # a good classifier's embeddings: labels far apart (silhouette above 0.99), yet the rows of
    # a label still differ from one another, so nothing has collapsed to a point
    centres = gaussian(40, 10, 64, scale=1.0)
    labels = np.repeat(np.arange(10), 40)
    healthy = noisy(centres[labels], 41, 0.06)
    report = diagnose_embeddings(healthy, labels=labels)
    assert report.stats["silhouette"] > 0.99
    assert report.stats["label_spread"] > 3 * Thresholds().min_label_spread
    assert report.findings == []


def test_point_collapse_per_label_against_targets_that_vary_within_labels(gaussian):
    centres = gaussian(42, 8, 32)
    labels = np.repeat(np.arange(8), 50)
    targets = noisy(centres[labels], 43, 0.5)
    collapsed = noisy(centres[labels], 44, 0.01)  # the label's mean, whatever the target
    report = diagnose_embeddings(collapsed, targets, labels=labels)
    assert "POINT_COLLAPSE" in errors(report)
    assert report.stats["label_spread_ratio"] < Thresholds().min_label_spread_ratio
    good = noisy(targets, 45, 0.05)
    report = diagnose_embeddings(good, targets, labels=labels)
    assert "POINT_COLLAPSE" not in errors(report)
    assert report.stats["label_spread_ratio"] == pytest.approx(1.0, abs=0.05)


def test_outputs_equal_to_per_label_prototype_targets_are_not_point_collapse(gaussian):
    centres = gaussian(46, 6, 16)
    labels = np.repeat(np.arange(6), 20)
    report = diagnose_embeddings(centres[labels], centres[labels], labels=labels)
    assert "POINT_COLLAPSE" not in errors(report)


def test_slots_identical_fires_on_copied_slots_and_not_on_distinct_ones(gaussian):
    base = gaussian(19, 64, 32)
    copied = noisy(np.repeat(base[:, None, :], 5, axis=1), 20, 1e-3)
    report = diagnose_embeddings(copied)
    assert "SLOTS_IDENTICAL" in errors(report)
    assert report.stats["sets"] == 64 and report.stats["slots"] == 5
    distinct = gaussian(21, 64 * 5, 32).reshape(64, 5, 32) + 10.0  # a shared offset is fine
    assert diagnose_embeddings(distinct).findings == []


def test_slot_labels_per_set_are_repeated_per_slot(gaussian):
    slots = gaussian(22, 40 * 4, 16).reshape(40, 4, 16)
    report = diagnose_embeddings(slots, labels=np.arange(40) % 5)
    assert report.stats["labels"] == 5 and "silhouette" in report.stats


def test_non_finite_outputs_are_reported_and_stop_the_other_metrics(gaussian):
    pred = gaussian(23, 50, 8)
    pred[[3, 7], 2] = np.nan
    pred[9, 0] = np.inf
    report = diagnose_embeddings(pred)
    assert report.codes() == ["NON_FINITE_OUTPUT"] and report.findings[0].count == 3
    assert "effective_rank" not in report.stats


def test_every_code_is_registered_and_in_the_docs_table():
    registered = all_codes()
    table = (Path(__file__).resolve().parents[3] / "docs" / "finding-codes.md").read_text()
    for name in ("MEAN_VECTOR_COLLAPSE", "DIMENSIONAL_COLLAPSE", "UNIT_NORM_OUTPUT",
                 "MOMENT_MISMATCH", "POINT_COLLAPSE", "SLOTS_IDENTICAL", "NON_FINITE_OUTPUT"):
        assert registered[name][0] == "uncollapse.validators.collapse.diagnose"
        assert f"`{name}`" in table


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"pred": np.zeros((1, 4))}, "at least two rows"),
    ({"pred": np.zeros((5, 4)), "targets": np.zeros((5, 3))}, "paired row for row"),
    ({"pred": np.zeros((5, 4)), "groups": np.arange(5)}, "groups need targets"),
    ({"pred": np.zeros((5, 4)), "labels": np.arange(4)}, "4 values for 5 rows"),
    ({"pred": np.zeros(5)}, "expected shape"),
    ({"pred": np.array([["a", "b"], ["c", "d"]])}, "numeric"),
])
def test_bad_input_is_a_tool_error_that_says_what_is_wrong(kwargs, message):
    with pytest.raises(ToolError, match=message):
        diagnose_embeddings(**kwargs)


def test_labels_with_one_row_each_are_not_point_collapse(gaussian):
    # a label of one row is trivially "one point": it says nothing about collapse
    pred = gaussian(47, 200, 16)
    labels = np.arange(200)
    labels[:10] = 0  # one label with several rows, the rest singletons
    report = diagnose_embeddings(pred, labels=labels)
    assert "POINT_COLLAPSE" not in errors(report)
    assert report.stats["label_spread"] > 0.5
    assert "POINT_COLLAPSE" not in errors(diagnose_embeddings(pred, labels=np.arange(200)))
