"""Batches are well mixed: which documents share a batch is as unpredictable as in uniformly
random batches, although the planner deals its columns with rotations of shared random orders
(one gather) instead of an independent shuffle per column."""

from __future__ import annotations

from collections import Counter
from math import comb

import numpy as np

from uncollapse.samplers import DiverseBatchSampler, planner
from uncollapse.samplers.planner import _shuffle_rows

# 1,200 documents of 20 rows, batches of 40 with at most one row of a document: 600 batches,
# every row placed, each document in 20 of them
DOCS, ROWS_PER_DOC, BATCH = 1200, 20, 40
N_BATCHES = DOCS * ROWS_PER_DOC // BATCH


def doc_ids() -> np.ndarray:
    return np.random.default_rng(0).permutation(np.repeat(np.arange(DOCS), ROWS_PER_DOC))


def shared_batches(docs: np.ndarray, plan) -> dict[int, int]:
    """For every pair of documents that share a batch (key ``a * DOCS + b``, ``a < b``): in
    how many batches they meet."""
    batches = np.sort(docs[plan.rows].reshape(-1, BATCH), axis=1)
    first, second = np.triu_indices(BATCH, 1)
    pairs = (batches[:, first].astype(np.int64) * DOCS + batches[:, second]).reshape(-1)
    keys, counts = np.unique(pairs, return_counts=True)
    return dict(zip(keys.tolist(), counts.tolist(), strict=True))


def meeting_shares(meetings: dict[int, int]) -> np.ndarray:
    """Of the pairs that meet: the share meeting in 1, 2, 3 and 4 or more batches."""
    counts = np.minimum(np.fromiter(meetings.values(), dtype=np.int64), 4)
    return np.bincount(counts, minlength=5)[1:] / len(counts)


def random_batch_shares() -> np.ndarray:
    """The same shares where every document takes 20 of the 600 batches at random,
    independently of the others: the batches two documents share are hypergeometric."""
    p = np.array([comb(ROWS_PER_DOC, k) * comb(N_BATCHES - ROWS_PER_DOC, ROWS_PER_DOC - k)
                  for k in range(ROWS_PER_DOC + 1)], dtype=float) / comb(N_BATCHES, ROWS_PER_DOC)
    met = p[1:] / p[1:].sum()
    return np.array([met[0], met[1], met[2], met[3:].sum()])


def rotation_only(columns: np.ndarray, rng: np.random.Generator) -> None:
    """Each column rotated by a random offset, no shared random order: what the dealing would
    be without the order (neighbouring places stay neighbours)."""
    n = columns.shape[1]
    index = (np.arange(n) - rng.integers(0, n, len(columns))[:, None]) % n
    columns[...] = np.take_along_axis(columns, index, axis=1)


def test_documents_share_batches_as_often_as_in_uniformly_random_batches(monkeypatch):
    docs = doc_ids()
    expected = random_batch_shares()  # 0.719, 0.231, 0.044, 0.006
    for seed in (0, 1):
        got = meeting_shares(shared_batches(docs, DiverseBatchSampler(docs, BATCH, 1,
                                                                      seed=seed).plan(0)))
        assert np.abs(got - expected).sum() / 2 < 0.01  # measured under 0.001
    # the measure tells a predictable dealing apart: with rotations alone, two documents that
    # meet once meet in most of their batches
    monkeypatch.setattr(planner, "_shuffle_rows", rotation_only)
    got = meeting_shares(shared_batches(docs, DiverseBatchSampler(docs, BATCH, 1).plan(0)))
    assert got[3] > 0.5 and np.abs(got - expected).sum() / 2 > 0.5


def test_documents_that_met_in_one_epoch_meet_in_the_next_as_often_as_any():
    docs = doc_ids()
    sampler = DiverseBatchSampler(docs, BATCH, 1, seed=3)
    first, second = shared_batches(docs, sampler.plan(0)), shared_batches(docs, sampler.plan(1))
    all_pairs = DOCS * (DOCS - 1) // 2
    again = sum(key in second for key in first) / len(first)
    assert abs(again - len(second) / all_pairs) < 0.01  # both about 0.48
    # nor in more batches: the pairs that met in both epochs meet as often in the second
    both = [second[key] for key in first if key in second]
    assert abs(np.mean(both) - np.mean(list(second.values()))) < 0.02


def test_each_column_alone_is_dealt_in_every_order_equally_often():
    # 7 columns of 3 places: 3 shared orders (of at most 3 columns each); over 3,000 epochs
    # each column takes each of the 6 orders about 500 times
    seen = [Counter() for _ in range(7)]
    for seed in range(3000):
        columns = np.tile(np.arange(3, dtype=np.int32), (7, 1))
        _shuffle_rows(columns, np.random.default_rng(seed))
        for row, counter in zip(columns, seen, strict=True):
            counter[tuple(row.tolist())] += 1
    for counter in seen:
        assert len(counter) == 6
        assert 420 < min(counter.values()) and max(counter.values()) < 580


def test_columns_that_share_an_order_never_deal_the_same_place_to_one_batch():
    # with one order rotated alike, place x of two columns would meet in every epoch; the
    # shifts of the columns sharing an order differ, so in every batch the places differ
    for n_columns, n in ((9, 9), (5, 12), (20, 6)):
        for seed in range(50):
            columns = np.tile(np.arange(n, dtype=np.int32), (n_columns, 1))
            _shuffle_rows(columns, np.random.default_rng(seed))
            assert (np.sort(columns, axis=1) == np.arange(n)).all()  # each a permutation
            for start in range(0, n_columns, n):  # the columns sharing one order
                block = np.sort(columns[start:start + n], axis=0)
                assert (block[1:] != block[:-1]).all()
