# Attributes and scenes: an attribute table from files in CelebA's layout, its checks, the flip
# audit of a "flip half the time" augmentation next to AttributeFlipDataset, and scenes with masks.
#
# No CelebA download is available offline, so the attribute files below are SYNTHETIC: random
# values (fixed seed) written in the exact layout of list_attr_celeba.txt, identity_CelebA.txt
# and list_eval_partition.txt, with CelebA's 40 attribute names, CRLF line ends, a trailing
# space on the names line, a count line that claims 3 more images than there are, and one
# malformed row -- the irregularities a real download can have.
banner "attributes: synthetic files in CelebA's layout (seed 0; not real CelebA data)"
mkdir -p "$DEMO_OUT/celeba"
show "python: write $DEMO_OUT/celeba/{list_attr_celeba,identity_CelebA,list_eval_partition}.txt"
python - "$DEMO_OUT/celeba" <<'PY'
import sys
from pathlib import Path

import numpy as np

out = Path(sys.argv[1])
names = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips "
         "Big_Nose Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin "
         "Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open "
         "Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline "
         "Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
         "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()
rng = np.random.default_rng(0)
n, people = 4000, 400
share = rng.uniform(0.1, 0.6, len(names))
values = np.where(rng.random((n, len(names))) < share, 1, -1)
images = [f"{i:06d}.jpg" for i in range(1, n + 1)]
rows = [f"{img} " + " ".join(f"{v:2d}" for v in row) for img, row in zip(images, values)]
rows[41] = f"{images[41]} " + " ".join(["1"] * 38)   # a truncated row: 38 values, not 40
header = [str(n + 3), " ".join(names) + " "]          # claims 3 images more than there are
(out / "list_attr_celeba.txt").write_bytes(("\r\n".join(header + rows) + "\r\n").encode())
identity = rng.integers(1, people + 1, n)
(out / "identity_CelebA.txt").write_text(
    "".join(f"{img} {p}\n" for img, p in zip(images, identity)))
split_of_person = rng.choice([0, 1, 2], people + 1, p=[0.8, 0.1, 0.1])
(out / "list_eval_partition.txt").write_text(
    "".join(f"{img} {split_of_person[p]}\n" for img, p in zip(images, identity)))
# the mistake to catch: splitting by image instead of by person
(out / "partition_by_image.txt").write_text(
    "".join(f"{img} {s}\n" for img, s in zip(images, rng.choice([0, 1, 2], n))))
print(f"{n} images, {people} identities, {len(names)} attributes")
PY

banner "attributes: build the table (irregularities reported, malformed row skipped)"
expect 0 uncollapse build attributes "$DEMO_OUT/celeba/list_attr_celeba.txt" \
  --identities "$DEMO_OUT/celeba/identity_CelebA.txt" \
  --partition "$DEMO_OUT/celeba/list_eval_partition.txt" -o "$DEMO_OUT/attrs.parquet"
expect 1 uncollapse build attributes "$DEMO_OUT/celeba/list_attr_celeba.txt" --strict

banner "attributes: check the three attributes we flip (8 combinations, >= 8 rows each)"
expect 0 uncollapse validate attributes "$DEMO_OUT/attrs.parquet" \
  --attributes Smiling,Male,Eyeglasses --min-rows 8

banner "attributes: splits assigned per image put one person in train and test"
expect 0 uncollapse build attributes "$DEMO_OUT/celeba/list_attr_celeba.txt" \
  --identities "$DEMO_OUT/celeba/identity_CelebA.txt" \
  --partition "$DEMO_OUT/celeba/partition_by_image.txt" -o "$DEMO_OUT/attrs_leaky.parquet"
expect 1 uncollapse validate attributes "$DEMO_OUT/attrs_leaky.parquet" \
  --attributes Smiling,Male,Eyeglasses

banner "flips: an augmentation that flips an attribute half the time fails the audit"
cat > "$DEMO_OUT/half_flips.py" <<'PY'
"""The broken augmentation: with probability 1/2 flip one attribute, else keep the source.

It reads attrs.parquet from its own folder, so it also works outside the demo:
uncollapse validate flips --dataset demo-out/half_flips.py:make_dataset
"""
from pathlib import Path

import numpy as np
import polars as pl


class HalfTimeFlips:
    def __init__(self, table_path, names, seed=0):
        self.source = pl.read_parquet(table_path).select(names).to_numpy()
        self.seed = seed

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, i])
        target = self.source[i].copy()
        if rng.random() < 0.5:
            j = rng.integers(len(target))
            target[j] = 1 - target[j]
        return {"source_attributes": self.source[i], "target_attributes": target}


def make_dataset():
    return HalfTimeFlips(Path(__file__).with_name("attrs.parquet"),
                         ["Smiling", "Male", "Eyeglasses"])
PY
expect 1 uncollapse validate flips --dataset "$DEMO_OUT/half_flips.py:make_dataset" --quiet \
  --json "$DEMO_OUT/reports/flips-half.json"

banner "flips: AttributeFlipDataset (1-2 flips, always) in GroupedBatchSampler batches"
expect 0 uncollapse validate flips --table "$DEMO_OUT/attrs.parquet" \
  --attributes Smiling,Male,Eyeglasses --min-flips 1 --max-flips 2 \
  --batch-size 64 --per-group 8 --quiet --json "$DEMO_OUT/reports/flips.json"

banner "scenes: 2,000 scenes of 64x64 with 1-6 shapes and instance masks, then checked"
expect 0 uncollapse build scenes --num 2000 --size 64 --max-objects 6 --seed 0 \
  -o "$DEMO_OUT/scenes.npz"
expect 0 uncollapse validate scenes "$DEMO_OUT/scenes.npz"
show "python: a copy whose num_objects claims one object more in 5 scenes"
python - "$DEMO_OUT/scenes.npz" "$DEMO_OUT/scenes_bad.npz" <<'PY'
import sys

import numpy as np

with np.load(sys.argv[1], allow_pickle=False) as data:
    arrays = {key: data[key] for key in data.files}
arrays["num_objects"][:5] += 1
np.savez_compressed(sys.argv[2], **arrays)
PY
expect 1 uncollapse validate scenes "$DEMO_OUT/scenes_bad.npz"
