"""Collapse metrics for embeddings and model outputs (all of them, importable from here).

They live in modules by family: ``spectrum`` (singular values, RankMe), ``geometry``
(mean-vector baseline, moments, alignment, uniformity, variance floor, spread), ``clustering``
(silhouette, purity), ``retrieval`` (contrastive accuracy, recall@k) and ``masks`` (ARI);
``tensors`` holds the input handling they share.

Every function takes numpy arrays or torch tensors. A numpy array is wrapped with
``torch.from_numpy`` (no copy); a tensor is used where it lives, so a CUDA batch is measured
on its GPU and never copied to the host. Results come back as Python floats, dicts of floats,
or small numpy arrays.

Conventions: ``x`` is ``[N, D]`` (rows are embeddings); ``pred`` and ``targets`` are paired
``[N, D]`` (row i of ``pred`` is the model's output for target i); ``labels`` and ``groups`` are
``[N]`` (any integer or string values). Half-precision input is measured in float32; sums whose
cancellation matters (singular values, silhouette, ARI) are computed in float64.

Metrics that compare every row with every other row (uniformity, silhouette, k-NN purity,
contrastive accuracy, recall@k) take ``max_samples`` and ``seed``: above ``max_samples`` rows
they are computed on a seeded random subset of rows, drawn with a ``torch.Generator`` of that
seed, so the same call always measures the same rows.
"""

from __future__ import annotations

from uncollapse.validators.collapse.clustering import cluster_purity, knn_purity, silhouette
from uncollapse.validators.collapse.geometry import (
    alignment,
    label_spread,
    mean_vector_baseline,
    moment_comparison,
    relative_spread,
    uniformity,
    variance_floor,
    within_set_cosine,
)
from uncollapse.validators.collapse.masks import adjusted_rand_index, ari_per_image, foreground_ari
from uncollapse.validators.collapse.retrieval import contrastive_accuracy, recall_at_k
from uncollapse.validators.collapse.spectrum import effective_rank, singular_values
from uncollapse.validators.collapse.tensors import (
    MAX_SAMPLES,
    as_codes,
    as_float,
    as_tensor,
    normalize,
    sample_rows,
)

__all__ = [
    "MAX_SAMPLES", "adjusted_rand_index", "alignment", "ari_per_image", "as_codes", "as_float",
    "as_tensor", "cluster_purity", "contrastive_accuracy", "effective_rank", "foreground_ari",
    "knn_purity", "label_spread", "mean_vector_baseline", "moment_comparison", "normalize",
    "recall_at_k", "relative_spread", "sample_rows", "silhouette", "singular_values",
    "uniformity", "variance_floor", "within_set_cosine",
]
