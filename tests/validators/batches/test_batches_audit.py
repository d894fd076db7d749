"""audit_batches: each finding fires on the batches that break its rule, and only then."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DistributedSampler, RandomSampler

from uncollapse.samplers import DiverseBatchSampler, GroupedBatchSampler
from uncollapse.validators.batches import audit_batches

GROUPS = np.repeat(np.arange(100), 5)


def test_grouped_sampler_passes_with_k_positives_per_row_on_every_rank():
    ranks = [GroupedBatchSampler(GROUPS, 50, 5, rank=r, world_size=2) for r in range(2)]
    report = audit_batches(ranks=ranks, group_ids=GROUPS, per_group=5, epochs=3)
    assert report.ok and report.findings == []
    assert report.stats["batches_per_rank"] == [5, 5]
    assert report.stats["positives_per_row"] == {"min": 4, "mean": 4.0, "max": 4}
    assert report.stats["groups_per_batch"] == {"min": 10, "mean": 10.0, "max": 10}
    assert report.stats["rows_covered_per_epoch"] == [500, 500, 500]
    assert report.stats["sampler"]["batches_per_rank"] == 5


def test_random_batches_without_positives_are_errors():
    batches = [[0, 5, 10], [1, 2, 20], [3, 15, 25]]
    report = audit_batches(batches, group_ids=GROUPS)
    assert report.exit_code() == 1
    finding = {f.code: f for f in report.findings}["BATCH_WITHOUT_POSITIVES"]
    assert finding.count == 2
    assert finding.examples == [{"epoch": 0, "rank": 0, "batch": 0},
                                {"epoch": 0, "rank": 0, "batch": 2}]
    alone = {f.code: f for f in report.findings}["ROWS_WITHOUT_POSITIVE"]
    assert alone.count == 7 and alone.severity == "warning"
    assert report.stats["batches_without_positives"] == 2


def test_duplicate_index_and_wrong_group_size_are_found():
    batches = [[0, 1, 2, 3, 4], [5, 5, 6, 7, 8]]  # second batch pads group 1 with a repeat
    report = audit_batches(batches, group_ids=GROUPS, per_group=5)
    codes = report.codes()
    assert "DUPLICATE_INDEX_IN_BATCH" in codes and "GROUP_SIZE_IN_BATCH" in codes
    duplicate = {f.code: f for f in report.findings}["DUPLICATE_INDEX_IN_BATCH"]
    assert duplicate.examples == [{"epoch": 0, "rank": 0, "batch": 1, "row": 5}]


def test_document_over_cap_names_batch_doc_and_count():
    docs = np.array(["a"] * 6 + ["b"] * 6)
    report = audit_batches([[0, 1, 2, 6], [3, 7, 8, 9]], doc_ids=docs, max_per_doc=2)
    over = {f.code: f for f in report.findings}["DOC_OVER_CAP"]
    assert over.count == 2
    assert over.examples == [{"epoch": 0, "rank": 0, "batch": 0, "doc": "a", "rows": 3},
                             {"epoch": 0, "rank": 0, "batch": 1, "doc": "b", "rows": 3}]
    assert report.stats["max_rows_per_doc_in_batch"]["max"] == 3


def test_diverse_sampler_passes_its_own_cap():
    docs = np.repeat(np.arange(30), np.arange(30) % 7 + 1)
    sampler = DiverseBatchSampler(docs, 16, 2)
    report = audit_batches(sampler, doc_ids=docs, max_per_doc=2, epochs=2)
    assert report.ok and report.codes() == ["ROWS_NOT_PLACED"]
    assert report.stats["max_rows_per_doc_in_batch"]["max"] <= 2
    # 115 rows, 7 full batches of 16: 3 rows fill no batch; 2.6% is below the warning share
    not_placed = report.findings[0]
    assert (not_placed.count, not_placed.severity) == (3, "info")
    assert not_placed.examples[0]["bound"] == 115 == sampler.rows_unplaced() + 112


def test_padding_distributed_sampler_overlaps_ranks():
    ranks = [BatchSampler(DistributedSampler(range(10), num_replicas=3, rank=r, shuffle=False),
                          2, False) for r in range(3)]
    report = audit_batches(ranks=ranks, n_rows=10)
    overlap = {f.code: f for f in report.findings}["RANKS_OVERLAP"]
    assert overlap.count == 2  # 10 rows over 3 ranks: 2 padded repeats
    assert report.stats["rows_on_several_ranks"] == 2


def test_ranks_with_different_lengths_and_wrong_len_are_errors():
    class LyingSampler:
        def __init__(self, batches, claimed):
            self.batches, self.claimed = batches, claimed

        def __iter__(self):
            return iter(self.batches)

        def __len__(self):
            return self.claimed

    ranks = [LyingSampler([[0, 1], [2, 3]], 2), LyingSampler([[4, 5]], 2)]
    report = audit_batches(ranks=ranks, n_rows=6)
    codes = {f.code: f for f in report.findings}
    assert codes["RANK_LENGTHS_DIFFER"].examples == [{"epoch": 0, "batches_per_rank": [2, 1]}]
    assert codes["SAMPLER_LEN_WRONG"].examples == [{"epoch": 0, "rank": 1, "len": 2,
                                                    "yielded": 1}]


def test_epochs_that_repeat_exactly_are_flagged():
    sampler = BatchSampler(range(10), 5, True)  # no shuffling at all
    report = audit_batches(sampler, n_rows=10, epochs=3)
    identical = {f.code: f for f in report.findings}["EPOCHS_IDENTICAL"]
    assert identical.count == 2 and identical.severity == "warning"
    shuffled = BatchSampler(RandomSampler(range(10), generator=torch.Generator().manual_seed(0)),
                            5, True)
    assert "EPOCHS_IDENTICAL" not in audit_batches(shuffled, n_rows=10, epochs=3).codes()


def test_repeated_rows_within_an_epoch_and_out_of_range_rows():
    report = audit_batches([[0, 1], [1, 2]], n_rows=5)
    repeated = {f.code: f for f in report.findings}["ROW_REPEATED_IN_EPOCH"]
    assert repeated.examples == [{"epoch": 0, "rank": 0, "row": 1, "batches": 2}]
    report = audit_batches([[0, 7]], n_rows=5)
    assert report.codes() == ["BATCH_INDEX_OUT_OF_RANGE"]
    assert report.findings[0].examples == [{"epoch": 0, "rank": 0, "batch": 0, "row": 7}]


def test_no_batches_is_an_error_and_arguments_are_checked():
    assert audit_batches([], n_rows=5).codes() == ["NO_BATCHES"]
    with pytest.raises(ValueError, match="either batches"):
        audit_batches()
    with pytest.raises(ValueError, match="one-shot iterator"):
        audit_batches(iter([[0, 1]]), epochs=2)


def test_a_2d_array_of_batches_is_audited_like_a_list():
    plan = np.arange(500).reshape(10, 50)
    report = audit_batches(plan, group_ids=GROUPS, per_group=5)
    assert report.ok and report.stats["groups_per_batch"]["max"] == 10
