"""The LVM's within-document retrieval (``predictor_metrics``): exact ranks on vectors whose
similarities are known, and a perfect predictor ranked first however the products round."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from uncollapse.trainers.lvm.recipe import predictor_metrics

CONTEXT = 3


def documents(n_docs: int, length: int, dim: int, seed: int = 0):
    """Targets (rows of a random orthogonal matrix when dim allows), doc ids, positions."""
    g = torch.Generator().manual_seed(seed)
    n = n_docs * length
    if dim >= n:
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
        target = q[:n].float()
    else:
        target = F.normalize(torch.randn(n, dim, generator=g), dim=-1)
    docs = torch.arange(n_docs).repeat_interleave(length)
    positions = torch.arange(length).repeat(n_docs) + CONTEXT
    return target, docs, positions


def test_a_perfect_predictor_ranks_every_target_first():
    # 1,200 float32 products of dim 384: the elementwise and the matrix product of a target with
    # itself differ in their last bits for many rows; that must not put a target above itself
    target, docs, positions = documents(n_docs=6, length=200, dim=384)
    metrics = predictor_metrics(target.clone(), target, docs, positions, CONTEXT)
    assert metrics["recall@1"] == 1.0
    assert metrics["mrr"] == 1.0
    assert metrics["mean_cosine"] > 0.9999


def test_ranks_count_later_sentences_and_leave_out_the_context():
    target, docs, positions = documents(n_docs=3, length=10, dim=64)
    nxt, prev = target.roll(-1, dims=0), target.roll(1, dims=0)
    last_of_doc = positions == positions.max()
    first_of_doc = positions == positions.min()
    # closer to the next target than to its own: rank 2, except at the end of a document
    toward_next = F.normalize(target + 2 * nxt, dim=-1)
    toward_next[last_of_doc] = target[last_of_doc]
    ranked = predictor_metrics(toward_next, target, docs, positions, CONTEXT)
    assert ranked["recall@1"] == float(last_of_doc.double().mean())
    assert ranked["mrr"] == float((last_of_doc.double() + 0.5 * ~last_of_doc).mean())
    # closer to the previous target, a sentence of its own context: not a candidate, rank 1
    toward_previous = F.normalize(target + 2 * prev, dim=-1)
    toward_previous[first_of_doc] = target[first_of_doc]
    assert predictor_metrics(toward_previous, target, docs, positions, CONTEXT)["recall@1"] == 1.0
