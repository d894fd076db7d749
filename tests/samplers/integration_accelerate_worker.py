"""Run by tests/samplers/test_integration_accelerate.py under ``torchrun --nproc_per_node=2``
(CPU, gloo).

Trains a tiny model for two epochs with Hugging Face accelerate in each documented setup,
records the rows every process trained on in each epoch, tries the setup that would shard the
batches twice, and writes it all to ``<out>/rank<k>.json``.
"""

import json
import sys

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, Dataset

from uncollapse.samplers import GroupedBatchSampler

GROUP_IDS = np.repeat(np.arange(160), 5)  # 800 rows, 20 batches of 8 groups x 5 rows


class Rows(Dataset):
    def __len__(self):
        return len(GROUP_IDS)

    def __getitem__(self, i):
        return {"row": i, "x": torch.full((2,), float(i % 7))}


def train(accelerator, loader, prepare_loader):
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    if prepare_loader:
        model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    else:
        model, optimizer = accelerator.prepare(model, optimizer)
    epochs = []
    for _ in range(2):
        rows = []
        for batch in loader:
            rows.append(batch["row"].tolist())
            loss = model(batch["x"].to(accelerator.device)).pow(2).mean()
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
        epochs.append(rows)
    return epochs


def main(out_dir):
    accelerator = Accelerator(cpu=True)
    result = {"rank": accelerator.process_index}
    # 1. the loader prepared: accelerate deals the batches of a world_size=1 sampler
    sampler = GroupedBatchSampler(GROUP_IDS, batch_size=40, per_group=5, seed=3, rank=0,
                                  world_size=1)
    result["prepared"] = train(accelerator, DataLoader(Rows(), batch_sampler=sampler), True)
    # 2. the loader not prepared: the sampler splits the batches across ranks itself
    sampler = GroupedBatchSampler(GROUP_IDS, batch_size=40, per_group=5, seed=3)
    result["not_prepared"] = train(accelerator, DataLoader(Rows(), batch_sampler=sampler),
                                   False)
    # 3. both at once would drop half the rows: refused with what to do
    try:
        train(accelerator, DataLoader(Rows(), batch_sampler=sampler), True)
        result["double_sharding"] = None
    except RuntimeError as error:
        result["double_sharding"] = str(error)
    with open(f"{out_dir}/rank{result['rank']}.json", "w") as f:
        json.dump(result, f)
    accelerator.wait_for_everyone()
    # leave the gloo group together and tear it down before exit: a rank whose gloo threads are
    # still alive at interpreter shutdown can abort ("terminate called without an active
    # exception"), failing the run after its work is done
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
