# Collapse diagnostics: real sentence embeddings of the bundled COCO captions (all-MiniLM-L6-v2,
# committed under data/coco/embeddings/) as targets; a healthy prediction of each caption (another
# caption of the same image) beside a collapsed one (the targets' mean vector plus noise).
banner "diagnostics: a healthy prediction set and a collapsed one, against real caption embeddings"
show "python: write targets, groups, a healthy and a collapsed prediction set (seed 0)"
mkdir -p "$DEMO_OUT/collapse"
python - data/coco/embeddings "$DEMO_OUT/collapse" <<'PY'
import sys
from pathlib import Path

import numpy as np

source, out = Path(sys.argv[1]), Path(sys.argv[2])
targets = np.load(source / "minilm_l6_v2.npy").astype(np.float32)
image_ids = np.load(source / "image_ids.npy")
n = len(image_ids)
starts = np.r_[0, np.flatnonzero(np.diff(image_ids)) + 1]  # captions are sorted by image
sizes = np.diff(np.r_[starts, n])
group = np.repeat(np.arange(len(starts)), sizes)
partner = starts[group] + (np.arange(n) - starts[group] + 1) % sizes[group]
rng = np.random.default_rng(0)
collapsed = targets.mean(axis=0) + rng.normal(0, 1e-3, targets.shape).astype(np.float32)
for name, array in {"targets": targets, "groups": image_ids, "healthy": targets[partner],
                    "collapsed": collapsed}.items():
    np.save(out / f"{name}.npy", array)
print(f"{n} captions of {len(starts)} images, {targets.shape[1]} dims")
PY
expect 0 uncollapse diagnose embeddings "$DEMO_OUT/collapse/healthy.npy" \
  --targets "$DEMO_OUT/collapse/targets.npy" --groups "$DEMO_OUT/collapse/groups.npy" \
  --labels "$DEMO_OUT/collapse/groups.npy" --json "$DEMO_OUT/reports/embeddings-healthy.json"
expect 1 uncollapse diagnose embeddings "$DEMO_OUT/collapse/collapsed.npy" \
  --targets "$DEMO_OUT/collapse/targets.npy" --groups "$DEMO_OUT/collapse/groups.npy" \
  --json "$DEMO_OUT/reports/embeddings-collapsed.json"
