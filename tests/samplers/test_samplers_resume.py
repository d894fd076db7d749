"""Resuming under training libraries: torchdata's StatefulDataLoader with workers, and PyTorch
Lightning resumed at an epoch boundary and in the middle of an epoch (real Lightning, a worker
script run as a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from torchdata.stateful_dataloader import StatefulDataLoader

from uncollapse.samplers import GroupedBatchSampler

WORKER = Path(__file__).with_name("lightning_resume_worker.py")
GROUP_IDS = np.repeat(np.arange(190), 5)  # 19 batches of 10 groups x 5 rows


def sampler():
    return GroupedBatchSampler(GROUP_IDS, batch_size=50, per_group=5, seed=11)


def plan_of(epoch):
    return sampler().plan(epoch).rows.reshape(-1, 50).tolist()


def loader(batch_sampler):
    return StatefulDataLoader(range(len(GROUP_IDS)), batch_sampler=batch_sampler,
                              num_workers=2)


def test_stateful_loader_with_workers_resumes_mid_epoch_with_the_whole_epoch_as_its_length():
    first = loader(sampler())
    first.batch_sampler.set_epoch(2)
    iterator = iter(first)
    head = [next(iterator).tolist() for _ in range(7)]
    state = first.state_dict()  # 7 batches trained; the workers have prefetched more
    resumed = loader(sampler())
    resumed.load_state_dict(state)
    iterator = iter(resumed)  # restores the sampler's state
    assert len(resumed) == 19  # what a training library counts its steps against
    rest = [b.tolist() for b in iterator]
    assert head + rest == plan_of(2) and len(rest) == 12
    resumed.batch_sampler.set_epoch(3)
    assert [b.tolist() for b in resumed] == plan_of(3)


def test_stateful_loader_resumed_from_the_end_of_an_epoch_goes_on_with_the_next():
    first = loader(sampler())
    assert [b.tolist() for b in first] == plan_of(0)
    resumed = loader(sampler())
    resumed.load_state_dict(first.state_dict())
    assert [b.tolist() for b in resumed] == plan_of(1)


def test_set_epoch_of_the_pass_in_progress_keeps_its_count_and_another_epoch_leaves_it():
    batches = sampler()
    iterator = iter(batches)
    head = [next(iterator) for _ in range(4)]
    batches.set_epoch(0)  # what Lightning does after its loader has started the pass
    assert batches.state_dict()["batches_done"] == 4
    assert head + list(iterator) == plan_of(0)
    iterator = iter(batches)
    next(iterator)
    batches.set_epoch(5)  # a pass of epoch 1 left after one batch
    next(iterator)  # its iterator goes on without moving the state of epoch 5
    assert (batches.state_dict()["epoch"], batches.state_dict()["batches_done"]) == (5, 0)
    assert list(batches) == plan_of(5)


def test_lightning_with_workers_resumed_at_an_epoch_boundary_and_mid_epoch_trains_every_row_once(
        tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, str(WORKER), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = json.loads((tmp_path / "rows.json").read_text())
    for name in ("plain", "stateful"):  # DataLoader and StatefulDataLoader, num_workers=2
        straight = runs[f"{name}/straight"]
        assert straight == {str(e): plan_of(e) for e in range(3)}
        for epoch in straight.values():  # every row once per epoch
            assert sorted(np.concatenate(epoch).tolist()) == list(range(len(GROUP_IDS)))
        # stopped after epoch 0, resumed from its end-of-epoch checkpoint: epochs 1 and 2
        # are those of the run that never stopped (not epoch 0's plan again)
        assert runs[f"{name}/before-boundary"] == {"0": straight["0"]}
        assert runs[f"{name}/after-boundary"] == {"1": straight["1"], "2": straight["2"]}
    # stopped after 7 of epoch 1's 19 batches, resumed from that checkpoint: the other 12,
    # then the whole of epoch 2
    straight = runs["stateful/straight"]
    before, after = runs["stateful/before-middle"], runs["stateful/after-middle"]
    assert len(before["1"]) == 7 and len(after["1"]) == 12
    assert before["1"] + after["1"] == straight["1"]
    assert after["2"] == straight["2"]
