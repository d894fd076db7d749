# Trainers: the reference recipes on CPU, briefly, each beside the broken data it refuses.
# Contrastive: the bundled COCO captions with their real all-MiniLM-L6-v2 embeddings (the 2,003
# captions of 400 images under data/coco/embeddings/), caption-to-caption (the captions of one
# image are positives). Next-vector: the WikiText-2 sequence file of section 30.
# A run directory that holds a run is refused without --resume: start this section's afresh.
rm -rf "$DEMO_OUT/runs/contrastive" "$DEMO_OUT/runs/contrastive_row_ids" "$DEMO_OUT/runs/lvm" \
  "$DEMO_OUT/runs/lvm_no_doc_ids"
banner "trainers: contrastive training on correct grouping next to loop-counter ids"
show "python: the caption rows that have embeddings, in the embeddings' order, and a copy with row-number ids"
mkdir -p "$DEMO_OUT/train"
python - "$DEMO_OUT/captions.parquet" data/coco/embeddings "$DEMO_OUT/train" <<'PY'
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

table_path, embeddings, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
vectors = np.load(embeddings / "minilm_l6_v2.npy").astype(np.float32)
image_ids = np.load(embeddings / "image_ids.npy")
table = pq.read_table(table_path)
ids = np.asarray(table.column("image_id")).astype(np.int64)
keep = np.flatnonzero(np.isin(ids, image_ids))
# embeddings are ordered by (image_id, annotation id); caption_idx numbers captions the same way
order = keep[np.lexsort((np.asarray(table.column("caption_idx"))[keep], ids[keep]))]
rows = table.take(pa.array(order))
assert np.array_equal(np.asarray(rows.column("image_id")).astype(np.int64), image_ids)
pq.write_table(rows, out / "captions.parquet")
np.save(out / "text.npy", vectors)
counter = np.arange(rows.num_rows)
broken = rows.set_column(rows.schema.get_field_index("match_id"), "match_id", pa.array(counter))
broken = broken.set_column(broken.schema.get_field_index("image_id"), "image_id",
                           pa.array(counter.astype(str)))
pq.write_table(broken, out / "captions_row_ids.parquet")
print(f"{rows.num_rows} captions of {len(np.unique(image_ids))} images, "
      f"{vectors.shape[1]}-d MiniLM embeddings")
PY
TRAIN=(--text-features "$DEMO_OUT/train/text.npy" --steps 150 --batch-size 100 --per-group 2
       --hidden 256 --dim 64 --lr 2e-3 --device cpu --quiet --monitor-warmup 50)
expect 0 uncollapse train contrastive --captions "$DEMO_OUT/train/captions.parquet" "${TRAIN[@]}" \
  --out "$DEMO_OUT/runs/contrastive"
expect 1 uncollapse train contrastive --captions "$DEMO_OUT/train/captions_row_ids.parquet" \
  "${TRAIN[@]}" --out "$DEMO_OUT/runs/contrastive_row_ids"
expect 0 uncollapse train contrastive --captions "$DEMO_OUT/train/captions_row_ids.parquet" \
  "${TRAIN[@]}" --force --out "$DEMO_OUT/runs/contrastive_row_ids"
show "both runs judged on the correct grouping of the same held-out images"
for run in contrastive contrastive_row_ids; do
  expect 0 uncollapse evaluate "$DEMO_OUT/runs/$run" --captions "$DEMO_OUT/train/captions.parquet" \
    --device cpu --json "$DEMO_OUT/runs/$run/eval_correct.json"
done
python - "$DEMO_OUT/runs" <<'PY'
import json
import sys
from pathlib import Path

runs = Path(sys.argv[1])
good, broken = (json.loads((runs / r / "eval_correct.json").read_text())
                for r in ("contrastive", "contrastive_row_ids"))
for name, e in (("correct ids", good), ("row-number ids, forced", broken)):
    print(f"{name:24s} recall@1 {e['caption_to_caption/recall@1']:.3f}  "
          f"recall@10 {e['caption_to_caption/recall@10']:.3f}  gap {e['similarity_gap']:.3f}")
assert good["caption_to_caption/recall@1"] > broken["caption_to_caption/recall@1"]
PY

banner "trainers: next-vector (LVM) training on WikiText-2, beside its three baselines"
expect 0 uncollapse train lvm --sequences "$DEMO_OUT/wiki_sequences_compact.npz" --arch gru \
  --steps 150 --batch-size 64 --max-per-doc 4 --hidden 128 --layers 1 --lr 5e-4 --device cpu \
  --quiet --monitor-warmup 50 --out "$DEMO_OUT/runs/lvm"
python - "$DEMO_OUT/runs/lvm/eval.json" <<'PY'
import json
import sys

evaluation = json.load(open(sys.argv[1]))
for name in ("model", "baseline_mean_target", "baseline_last_context", "baseline_context_mean"):
    m = evaluation[name]
    print(f"{name:24s} cosine {m['mean_cosine']:.3f}  recall@1 {m['recall@1']:.3f}  "
          f"MRR {m['mrr']:.3f}  vs hardest negative {m['contrastive_accuracy_hardest']:.3f}")
print("decoding round trip (top-1):", json.dumps(evaluation["round_trip"]))
print("(150 CPU steps on seeded bag-of-words vectors: the model starts at the context mean and "
      "barely moves; real sentence embeddings on a GPU are in BENCHMARKS.md)")
PY
show "the sequence file without doc_ids is refused before training"
expect 1 uncollapse train lvm --sequences "$DEMO_OUT/wiki_sequences_no_doc_ids.npz" --steps 10 \
  --device cpu --quiet --out "$DEMO_OUT/runs/lvm_no_doc_ids"
expect 0 uncollapse report "$DEMO_OUT/runs/lvm"
