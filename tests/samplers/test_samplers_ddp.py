"""Two real processes under torchrun (gloo): ranks are disjoint and equal in length."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

WORKER = Path(__file__).with_name("samplers_ddp_worker.py")


def test_two_ranks_under_torchrun_get_disjoint_equal_batches(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(WORKER), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    group_ids = np.repeat(np.arange(203), 5)
    doc_ids = np.repeat(np.arange(50), np.arange(50) % 9 + 1)
    # grouped: 203 groups, 8 per batch -> 25 batches -> 12 per rank (one left for balance)
    assert ranks[0]["len"] == ranks[1]["len"]
    assert ranks[0]["len"]["grouped"] == 12
    for name in ("grouped", "diverse"):
        for epoch in range(2):
            a, b = ranks[0][name][epoch], ranks[1][name][epoch]
            assert len(a) == len(b) == ranks[0]["len"][name]
            rows_a, rows_b = np.concatenate(a), np.concatenate(b)
            assert not set(rows_a.tolist()) & set(rows_b.tolist())
            assert len(np.unique(rows_a)) == len(rows_a)
        assert ranks[0][name][0] != ranks[0][name][1]  # set_epoch changed the plan
    for batch in ranks[0]["grouped"][0] + ranks[1]["grouped"][1]:
        _, counts = np.unique(group_ids[batch], return_counts=True)
        assert counts.tolist() == [5] * 8
    for batch in ranks[0]["diverse"][1] + ranks[1]["diverse"][0]:
        assert np.unique(doc_ids[batch], return_counts=True)[1].max() <= 2
