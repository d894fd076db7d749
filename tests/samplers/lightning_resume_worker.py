"""Run by tests/samplers/test_lightning_resume.py: PyTorch Lightning on one CPU device with a
two-worker loader over a GroupedBatchSampler, trained without a stop and resumed from
checkpoints. Writes the rows of every batch each run trained on, per epoch, to ``<out>/rows.json``.

Usage: ``python lightning_resume_worker.py OUT_DIR``.
"""

import json
import sys
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from uncollapse.samplers import GroupedBatchSampler

GROUP_IDS = np.repeat(np.arange(190), 5)  # 950 rows: 19 batches of 10 groups x 5 rows
EPOCHS = 3
STOP_AT_STEP = 26  # the mid-epoch checkpoint: 7 of the 19 batches of epoch 1 done


class Rows(Dataset):
    def __len__(self):
        return len(GROUP_IDS)

    def __getitem__(self, i):
        return {"row": i, "x": torch.full((2,), float(i % 7))}


class Model(L.LightningModule):
    def __init__(self, loader_class):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.loader_class = loader_class
        self.rows: dict[int, list[list[int]]] = {}

    def train_dataloader(self):
        sampler = GroupedBatchSampler(GROUP_IDS, batch_size=50, per_group=5, seed=11)
        return self.loader_class(Rows(), batch_sampler=sampler, num_workers=2)

    def training_step(self, batch, _):
        self.rows.setdefault(self.current_epoch, []).append(batch["row"].tolist())
        return self.layer(batch["x"]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(loader_class, out: Path, ckpt_path=None, callbacks=(), **limits) -> dict:
    """A fresh model, loader and sampler, as a new process would build them."""
    model = Model(loader_class)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=out,
                        callbacks=list(callbacks), **limits)
    trainer.fit(model, ckpt_path=ckpt_path)
    return {str(epoch): batches for epoch, batches in model.rows.items()}


def main(out: Path) -> None:
    warnings.filterwarnings("ignore")
    result = {}
    for name, loader_class in (("plain", DataLoader), ("stateful", StatefulDataLoader)):
        result[f"{name}/straight"] = fit(loader_class, out / name, max_epochs=EPOCHS)
        # an end-of-epoch checkpoint after epoch 0, then a new run from it
        first = ModelCheckpoint(dirpath=out / name / "boundary", filename="end-{epoch}",
                                save_top_k=-1, every_n_epochs=1, save_on_train_epoch_end=True)
        result[f"{name}/before-boundary"] = fit(loader_class, out / name, max_epochs=1,
                                                callbacks=[first])
        result[f"{name}/after-boundary"] = fit(
            loader_class, out / name, max_epochs=EPOCHS,
            ckpt_path=out / name / "boundary" / "end-epoch=0.ckpt")
    # a checkpoint in the middle of epoch 1 (the run stops there), then a new run from it
    middle = ModelCheckpoint(dirpath=out / "stateful" / "middle", filename="step-{step}",
                             save_top_k=-1, every_n_train_steps=STOP_AT_STEP)
    result["stateful/before-middle"] = fit(StatefulDataLoader, out / "stateful",
                                           max_epochs=EPOCHS, max_steps=STOP_AT_STEP,
                                           callbacks=[middle])
    result["stateful/after-middle"] = fit(
        StatefulDataLoader, out / "stateful", max_epochs=EPOCHS,
        ckpt_path=out / "stateful" / "middle" / f"step-step={STOP_AT_STEP}.ckpt")
    (out / "rows.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
