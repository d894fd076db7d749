"""BatchAssignment: each batch guarantee is a pandera check that fails on its planted defect."""

from __future__ import annotations

import numpy as np
import pandera.polars as pa
import polars as pl
import pytest

from uncollapse.samplers import DiverseBatchSampler, GroupedBatchSampler
from uncollapse.validators.batches import (
    BatchAssignment,
    batch_assignment_frame,
    batch_assignment_model,
)
from uncollapse.validators.bridge import pandera_failures

GROUPS = np.repeat(np.arange(100), 5)
DOCS = np.repeat(np.arange(5), 100)


def healthy_frame() -> pl.DataFrame:
    """Two ranks, two epochs of a grouped sampler: 10 groups x 5 rows per batch."""
    parts = []
    for epoch in range(2):
        for rank in range(2):
            sampler = GroupedBatchSampler(GROUPS, 50, 5, rank=rank, world_size=2)
            plan = sampler.plan(epoch)
            n = len(plan)
            parts.append(batch_assignment_frame(
                plan.rows, np.diff(plan.offsets), batch_epoch=np.full(n, epoch),
                batch_rank=np.full(n, rank), batch_in_pass=np.arange(n), group=GROUPS,
                doc=GROUPS // 5))
    return pl.concat(parts)


def failed(model, frame) -> dict:
    return {name: failure.count for name, (failure,) in
            pandera_failures(model.to_schema(), frame).items()}


def test_a_healthy_grouped_plan_passes_every_rule():
    frame = healthy_frame()
    model = batch_assignment_model(per_group=5, max_per_doc=25, n_rows=500)
    # 500 rows, half to each rank, in each of two epochs
    assert model.validate(frame, lazy=True).height == 1000
    assert BatchAssignment.validate(frame).height == 1000


def test_a_diverse_plan_passes_its_cap_and_fails_a_lower_one():
    plan = DiverseBatchSampler(DOCS, 10, 2).plan()
    frame = batch_assignment_frame(plan.rows, np.diff(plan.offsets), doc=DOCS)
    assert failed(batch_assignment_model(max_per_doc=2), frame) == {}
    # 5 documents fill a batch of 10 only with 2 rows each: 50 batches x 5 documents over 1
    assert len(plan) == 50
    assert failed(batch_assignment_model(max_per_doc=1), frame) == {"docs_within_cap": 250}


def test_each_rule_fails_once_per_thing_it_names():
    frame = pl.DataFrame({
        "epoch": [0] * 10, "rank": [0] * 8 + [1] * 2, "batch": [0, 0, 0, 0, 1, 1, 1, 1, 0, 0],
        # batch 0 of rank 0 repeats row 1; row 2 is in batches 0 and 1; rows 6, 7 go to rank 1
        "row": [0, 1, 1, 2, 2, 5, 6, 9, 6, 7],
        "group": [0, 0, 0, 1, 1, 2, 3, 4, 3, 3],
        "doc": [0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
    })
    model = batch_assignment_model(per_group=2, max_per_doc=1, n_rows=9)
    assert failed(model, frame) == {
        "rows_in_table": 1,                 # row 9 of a 9-row table
        "no_duplicate_index_in_batch": 1,   # the second row 1
        "every_batch_has_positives": 1,     # rank 0 batch 1: groups 1, 2, 3, 4 once each
        "every_row_has_a_positive": 5,      # row 2 in batch 0; 2, 5, 6, 9 in batch 1
        "groups_have_per_group_rows": 5,    # (batch 0, group 1) and the 4 groups of batch 1
        "docs_within_cap": 3,               # doc 0 in batch 0 (3 rows); doc 0/1 in batch 1
        "no_row_twice_in_an_epoch": 1,      # row 2
        "ranks_are_disjoint": 1,            # row 6
    }


def test_lazy_validation_lists_several_failures_at_once():
    frame = pl.DataFrame({"epoch": [0, 0, 0], "rank": [0, 0, 0], "batch": [0, 0, 1],
                          "row": [3, 3, 4], "group": [1, 1, 2]})
    with pytest.raises(pa.errors.SchemaErrors) as caught:
        batch_assignment_model(per_group=2).validate(frame, lazy=True)
    checks = {error.check.name for error in caught.value.schema_errors}
    assert {"no_duplicate_index_in_batch", "every_batch_has_positives",
            "groups_have_per_group_rows", "every_row_has_a_positive"} <= checks


def test_failure_cases_are_the_rows_that_name_the_batch():
    frame = pl.DataFrame({"epoch": [0] * 4, "rank": [0] * 4, "batch": [0, 0, 1, 1],
                          "row": [0, 5, 1, 2], "group": [0, 1, 0, 0]})
    (failure,) = pandera_failures(batch_assignment_model().to_schema(), frame)[
        "every_batch_has_positives"]
    assert failure.count == 1
    assert failure.cases.to_dicts() == [{"epoch": 0, "rank": 0, "batch": 0, "row": 0, "group": 0}]
    assert failure.rows().to_list() == [0]


def test_ids_too_wide_to_pack_fall_back_to_struct_keys():
    # group ids spanning 2^62 cannot be packed with the batch into one int64
    frame = pl.DataFrame({"epoch": [0, 0, 0, 0], "rank": [0, 0, 0, 0], "batch": [0, 0, 1, 1],
                          "row": [0, 1, 2, 3],
                          "group": [0, 0, 2**62, 2**62 + 1]})
    assert failed(batch_assignment_model(per_group=2), frame) == {
        "every_batch_has_positives": 1, "every_row_has_a_positive": 2,
        "groups_have_per_group_rows": 2}


def test_model_arguments_are_checked():
    with pytest.raises(ValueError, match="per_group must be at least 1"):
        batch_assignment_model(per_group=0)
    assert batch_assignment_model(per_group=3) is batch_assignment_model(per_group=3)
