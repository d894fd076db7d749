"""Run by tests/samplers/test_integration_lightning.py under ``torchrun --nproc_per_node=2``
(CPU, gloo).

Trains a tiny model for two epochs with PyTorch Lightning's DDP strategy in each documented
setup, records the rows every rank trained on in each epoch, and writes them to
``<out>/rank<k>.json``.
"""

import json
import sys
import warnings

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from uncollapse.samplers import GroupedBatchSampler

GROUP_IDS = np.repeat(np.arange(160), 5)  # 800 rows, 20 batches of 8 groups x 5 rows


class Rows(Dataset):
    def __len__(self):
        return len(GROUP_IDS)

    def __getitem__(self, i):
        return {"row": i, "x": torch.full((2,), float(i % 7))}


def grouped_loader():
    sampler = GroupedBatchSampler(GROUP_IDS, batch_size=40, per_group=5, seed=3)
    return DataLoader(Rows(), batch_sampler=sampler)


class Model(L.LightningModule):
    def __init__(self, loader=None):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.loader = loader
        self.rows: dict[int, list[list[int]]] = {}

    def train_dataloader(self):
        # the documented place: Lightning hands the sampler its rank when it re-creates it
        return self.loader if self.loader is not None else grouped_loader()

    def training_step(self, batch, _):
        self.rows.setdefault(self.current_epoch, []).append(batch["row"].tolist())
        return self.layer(batch["x"]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(model, **trainer_args):
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, **trainer_args)
    trainer.fit(model)
    return trainer


def main(out_dir):
    warnings.filterwarnings("ignore")
    result = {}
    # 1. default settings, the DataLoader built in train_dataloader()
    model = Model()
    trainer = fit(model)
    result["hook"] = [model.rows[e] for e in range(2)]
    result["rank"] = trainer.global_rank
    batch_sampler = trainer.train_dataloader.batch_sampler
    result["hook_sampler"] = [batch_sampler.rank, batch_sampler.world_size]
    # 2. use_distributed_sampler=False, the DataLoader built before fit() starts the group
    model = Model(grouped_loader())
    fit(model, use_distributed_sampler=False)
    result["outside"] = [model.rows[e] for e in range(2)]
    with open(f"{out_dir}/rank{result['rank']}.json", "w") as f:
        json.dump(result, f)
    # leave the gloo group together and tear it down before exit: a rank whose gloo threads are
    # still alive at interpreter shutdown can abort ("terminate called without an active
    # exception"), failing the run after its work is done
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
