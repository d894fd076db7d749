"""Run by tests/samplers/test_samplers_ddp.py under ``torchrun --nproc_per_node=2``.

Each rank builds the samplers without naming its rank (they read the initialised gloo group),
iterates a real DataLoader with worker processes for two epochs, and writes the rows it saw to
``<out>/rank<k>.json``.
"""

import json
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

from uncollapse.samplers import DiverseBatchSampler, GroupedBatchSampler, GroupedCollate


class Rows(Dataset):
    def __init__(self, group_ids):
        self.group_ids = group_ids

    def __len__(self):
        return len(self.group_ids)

    def __getitem__(self, i):
        return {"row": i, "match_id": int(self.group_ids[i])}


def main(out_dir):
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    group_ids = np.repeat(np.arange(203), 5)  # 1015 rows
    doc_ids = np.repeat(np.arange(50), np.arange(50) % 9 + 1)
    result = {"rank": rank, "world_size": dist.get_world_size()}
    grouped = GroupedBatchSampler(group_ids, batch_size=40, per_group=5, seed=3)
    diverse = DiverseBatchSampler(doc_ids, batch_size=16, max_per_doc=2, seed=3)
    result["len"] = {"grouped": len(grouped), "diverse": len(diverse)}
    for name, sampler, dataset in (("grouped", grouped, Rows(group_ids)),
                                   ("diverse", diverse, Rows(doc_ids))):
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=2,
                            collate_fn=GroupedCollate("match_id"))
        epochs = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            batches = []
            for batch in loader:
                batches.append(batch["row"].tolist())
                if name == "grouped":
                    assert batch["positive_mask"].sum(1).eq(4).all()
            # every rank reaches this collective the same number of times: no hang
            count = torch.tensor([len(batches)])
            dist.all_reduce(count)
            epochs.append(batches)
        result[name] = epochs
    with open(f"{out_dir}/rank{rank}.json", "w") as f:
        json.dump(result, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
