# Samplers: what a plain shuffled loader puts in each batch of the caption table, next to the
# grouped sampler that brings k captions of every image into the batch, on every rank.
banner "samplers: a plain shuffled loader (RandomSampler) over the captions, batches of 50"
expect 1 uncollapse validate batches "$DEMO_OUT/captions.parquet" --sampler random \
  --batch-size 50 --json "$DEMO_OUT/reports/batches-random.json"

banner "samplers: GroupedBatchSampler, 10 images x 5 captions per batch, 2 ranks, 2 epochs"
expect 0 uncollapse validate batches "$DEMO_OUT/captions.parquet" --sampler grouped \
  --batch-size 50 --per-group 5 --world-size 2 --epochs 2 \
  --json "$DEMO_OUT/reports/batches-grouped.json"

banner "samplers: the same sampler in a DataLoader with workers, with the positive mask"
show "python: GroupedBatchSampler + DataLoader(num_workers=2) + GroupedCollate"
python - "$DEMO_OUT/captions.parquet" <<'PY'
import sys

import polars as pl
from torch.utils.data import DataLoader

from uncollapse.samplers import GroupedBatchSampler, GroupedCollate

table = pl.read_parquet(sys.argv[1], columns=["match_id", "caption"])
rows = table.to_dicts()
sampler = GroupedBatchSampler(table["match_id"].to_numpy(), batch_size=50, per_group=5, seed=0)
loader = DataLoader(rows, batch_sampler=sampler, num_workers=2,
                    collate_fn=GroupedCollate("match_id"))
print(f"{len(sampler)} batches per epoch; sampler stats: {sampler.stats}")
for epoch in range(2):
    sampler.set_epoch(epoch)
    positives = [int(b["positive_mask"].sum(1).min()) for b in loader]
    print(f"epoch {epoch}: {len(positives)} batches, fewest positives of any row: "
          f"{min(positives)}")
batch = next(iter(loader))
print("first batch, first image:", batch["match_id"][:5].tolist(), batch["caption"][0])
PY

banner "samplers: a loop that stops after len(loader) batches still gets a new plan each epoch"
show "python: no set_epoch, break after len(loader) batches (as PyTorch Lightning does)"
python - "$DEMO_OUT/captions.parquet" <<'PY'
import sys

import polars as pl
from torch.utils.data import DataLoader

from uncollapse.samplers import GroupedBatchSampler

match_id = pl.read_parquet(sys.argv[1], columns=["match_id"])["match_id"].to_numpy()
sampler = GroupedBatchSampler(match_id, batch_size=50, per_group=5, seed=0)
loader = DataLoader(range(len(match_id)), batch_sampler=sampler)
for epoch in range(3):
    for step, batch in enumerate(loader):
        if step == 0:
            first = batch[:5].tolist()
        if step + 1 == len(loader):
            break
    print(f"pass {epoch}: sampler epoch {sampler.epoch}, first rows of the first batch {first}")
PY
