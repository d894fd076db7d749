"""SequenceDataset and HardNegativeSequenceDataset: both forms, negatives, determinism, loaders."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from uncollapse.data.npz import write_npz
from uncollapse.data.sequences.contract import (
    CONCEPT_TEXTS,
    DOC_KEYS,
    TEXTS,
    Texts,
    sequence_windows,
    utf8_texts,
)
from uncollapse.data.sequences.dataset import SequenceDataset, collate_batch
from uncollapse.data.sequences.hard_negatives import HardNegativeSequenceDataset
from uncollapse.errors import ToolError

D = 3


def compact(lengths, c=2) -> dict:
    """Vectors name their row: vector r = [r, doc, position], so values can be checked."""
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    doc = np.repeat(np.arange(len(lengths)), lengths)
    vectors = np.stack([np.arange(offsets[-1]), doc, np.arange(offsets[-1]) - offsets[doc]],
                       axis=1).astype(np.float32)
    return {"vectors": vectors, "doc_offsets": offsets, "context_length": np.int64(c)}


def dense(lengths, c=2) -> dict:
    arrays = compact(lengths, c)
    windows = sequence_windows(arrays["doc_offsets"], c)
    vectors = arrays["vectors"]
    return {"context_sequences": vectors[windows.context_rows(c)],
            "target_vectors": vectors[windows.target_rows],
            "doc_ids": windows.doc_index, "target_positions": windows.positions}


LENGTHS = [6, 2, 9, 3, 5]


@pytest.mark.parametrize("make", [compact, dense])
def test_items_are_the_context_and_target_of_each_window(make):
    dataset = SequenceDataset(make(LENGTHS))
    windows = sequence_windows(compact(LENGTHS)["doc_offsets"], 2)
    assert len(dataset) == windows.target_rows.size == 4 + 0 + 7 + 1 + 3
    for i in (0, 5, len(dataset) - 1):
        context, target = dataset[i]
        row = windows.target_rows[i]
        assert context[:, 0].tolist() == [row - 2, row - 1] and target[0] == row
    contexts, targets = dataset.get_batch([3, 0, 7])
    assert contexts.shape == (3, 2, D) and targets.shape == (3, D)
    assert targets[:, 0].tolist() == windows.target_rows[[3, 0, 7]].tolist()
    assert np.array_equal(dataset.doc_ids, windows.doc_index)


def test_compact_file_is_read_through_a_memory_map(tmp_path):
    write_npz(tmp_path / "s.npz", compact(LENGTHS))
    dataset = SequenceDataset(tmp_path / "s.npz")
    assert isinstance(dataset.vectors, np.memmap)
    context, target = dataset[4]
    assert context[:, 0].tolist() == [8, 9] and target[0] == 10
    assert not np.shares_memory(context, dataset.vectors)  # items are copies, safe to modify


def test_out_of_range_index_raises_index_error():
    dataset = SequenceDataset(compact(LENGTHS))
    with pytest.raises(IndexError):
        dataset[len(dataset)]
    with pytest.raises(IndexError):
        dataset.get_batch([0, len(dataset)])
    assert dataset[-1][1][0] == dataset[len(dataset) - 1][1][0]


def with_texts(arrays: dict) -> dict:
    """Text of row r is "row r" (doc keys "doc d") in the compact form; target texts in dense."""
    if "vectors" in arrays:
        arrays.update(utf8_texts(TEXTS, [f"row {r}" for r in range(len(arrays["vectors"]))]))
        arrays.update(utf8_texts(DOC_KEYS, [f"doc {d}" for d in range(len(LENGTHS))]))
    else:
        rows = arrays["target_vectors"][:, 0].astype(int)
        arrays.update(utf8_texts(CONCEPT_TEXTS, [f"row {r}" for r in rows]))
    return arrays


@pytest.mark.parametrize("make", [compact, dense])
def test_target_texts_are_decoded_from_utf8_bytes_on_access(tmp_path, make):
    write_npz(tmp_path / "s.npz", with_texts(make(LENGTHS)))
    dataset = SequenceDataset(tmp_path / "s.npz")
    assert isinstance(dataset.texts, Texts)
    rows = sequence_windows(compact(LENGTHS)["doc_offsets"], 2).target_rows
    assert dataset.target_texts([0, 5]) == [f"row {rows[0]}", f"row {rows[5]}"]
    if make is compact:
        assert isinstance(dataset.texts._utf8, np.memmap)  # never decoded whole on open
        assert dataset.doc_keys[int(dataset.doc_ids[5])] == f"doc {dataset.doc_ids[5]}"
        assert dataset.texts[3] == "row 3"
    restored = pickle.loads(pickle.dumps(dataset))
    assert restored.target_texts([5]) == dataset.target_texts([5])


def test_files_with_fixed_width_unicode_texts_still_load():
    arrays = compact(LENGTHS)
    arrays["texts"] = np.array([f"row {r}" for r in range(len(arrays["vectors"]))])
    arrays["doc_keys"] = np.array([f"doc {d}" for d in range(len(LENGTHS))])
    dataset = SequenceDataset(arrays)
    assert dataset.target_texts([0]) == ["row 2"] and dataset.doc_keys[4] == "doc 4"
    assert dataset.texts.tolist()[:2] == ["row 0", "row 1"]


def test_texts_of_the_wrong_length_are_a_tool_error():
    arrays = compact(LENGTHS)
    arrays.update(utf8_texts(TEXTS, ["only one"]))
    with pytest.raises(ToolError, match="1 texts for 25 vectors"):
        SequenceDataset(arrays)
    with pytest.raises(ToolError, match="holds no texts"):
        SequenceDataset(compact(LENGTHS)).target_texts([0])


def test_not_a_sequence_file_is_a_tool_error():
    with pytest.raises(ToolError, match="not a sequence file"):
        SequenceDataset({"x": np.zeros(3)})


# hard negatives -----------------------------------------------------------------------------
def check_negatives(dataset: HardNegativeSequenceDataset, w: int) -> np.ndarray:
    idx = np.arange(len(dataset))
    negatives = dataset.negative_indices(idx)
    docs, positions = dataset.doc_ids, np.asarray(dataset.target_positions)
    assert (negatives != idx).all()
    size = np.bincount(docs)[docs]
    same = docs[negatives] == docs
    assert same[size >= 2].all() and not same[size == 1].any()
    outside = np.abs(positions[negatives] - positions) > w
    relaxed = same & ~outside
    assert relaxed.sum() == dataset.fallback_counts["window_relaxed"]
    assert (size == 1).sum() == dataset.fallback_counts["other_document"]
    return negatives


@pytest.mark.parametrize("make", [compact, dense])
@pytest.mark.parametrize("w", [0, 1, 3])
def test_negatives_come_from_the_same_document_outside_the_window(make, w):
    dataset = HardNegativeSequenceDataset(make(LENGTHS), exclude_window=w, seed=5)
    check_negatives(dataset, w)


def test_fallbacks_are_counted():
    # document of 2 targets with w=1: each is within the other's window; a 1-target document
    dataset = HardNegativeSequenceDataset(compact([4, 3, 7]), exclude_window=1)
    assert dataset.fallback_counts == {"window_relaxed": 2, "other_document": 1}
    check_negatives(dataset, 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=1, max_size=12), st.integers(1, 3),
       st.integers(0, 3), st.integers(0, 2**63 - 1), st.integers(0, 50))
def test_negative_guarantees_hold_for_any_corpus(lengths, c, w, seed, epoch):
    arrays = compact(lengths, c)
    if sequence_windows(arrays["doc_offsets"], c).target_rows.size < 2:
        with pytest.raises(ToolError, match="at least 2"):
            HardNegativeSequenceDataset(arrays)
        return
    dataset = HardNegativeSequenceDataset(arrays, exclude_window=w, seed=seed, epoch=epoch)
    negatives = check_negatives(dataset, w)
    singles = [dataset._negative(i) for i in range(len(dataset))]
    assert singles == negatives.tolist()


def test_draws_cover_the_eligible_targets_evenly():
    dataset = HardNegativeSequenceDataset(compact([13]), exclude_window=2)
    seen = []
    for epoch in range(3000):
        dataset.set_epoch(epoch)
        seen.append(int(dataset.negative_indices([5])[0]))  # target at position 7
    counts = np.bincount(seen, minlength=len(dataset))
    eligible = [i for i in range(len(dataset)) if abs(i - 5) > 2]
    assert set(np.flatnonzero(counts)) == set(eligible)
    assert counts[eligible].min() > 3000 / len(eligible) * 0.7


def test_deterministic_in_seed_epoch_and_index_only():
    arrays = compact(LENGTHS)
    a = HardNegativeSequenceDataset(arrays, seed=11)
    b = HardNegativeSequenceDataset(arrays, seed=11)
    idx = np.arange(len(a))
    first = a.negative_indices(idx)
    assert np.array_equal(first, b.negative_indices(idx[::-1])[::-1])  # order of asking
    a.set_epoch(1)
    assert not np.array_equal(first, a.negative_indices(idx))
    a.set_epoch(0)
    assert np.array_equal(first, a.negative_indices(idx))
    other_seed = HardNegativeSequenceDataset(arrays, seed=12)
    assert not np.array_equal(first, other_seed.negative_indices(idx))


def test_single_item_and_batched_access_agree(tmp_path):
    write_npz(tmp_path / "s.npz", compact(LENGTHS))
    dataset = HardNegativeSequenceDataset(tmp_path / "s.npz", exclude_window=1, seed=3)
    dataset.set_epoch(4)
    contexts, targets, negatives = dataset.get_batch(list(range(len(dataset))))
    for i in range(len(dataset)):
        context, target, negative = dataset[i]
        assert np.array_equal(context, contexts[i]) and np.array_equal(target, targets[i])
        assert np.array_equal(negative, negatives[i])
    assert not np.array_equal(negatives, targets)
    items = dataset.__getitems__([2, 0])  # torch's contract: a list of items
    assert len(items) == 2
    assert all(np.array_equal(a, b) for a, b in zip(items[1], dataset[0], strict=True))


def test_dense_and_compact_forms_draw_the_same_negatives():
    a = HardNegativeSequenceDataset(compact(LENGTHS), exclude_window=1, seed=9)
    b = HardNegativeSequenceDataset(dense(LENGTHS), exclude_window=1, seed=9)
    idx = np.arange(len(a))
    assert np.array_equal(a.negative_indices(idx), b.negative_indices(idx))


def test_unsorted_dense_file_with_position_gaps_still_respects_the_window():
    arrays = dense([12, 10])
    keep = np.flatnonzero(arrays["target_positions"] % 3 != 0)  # gaps in positions
    order = np.random.default_rng(0).permutation(keep)           # and shuffled rows
    shuffled = {k: v[order] for k, v in arrays.items()}
    dataset = HardNegativeSequenceDataset(shuffled, exclude_window=2, seed=1)
    negatives = check_negatives(dataset, 2)
    assert np.array_equal(shuffled["doc_ids"][negatives], shuffled["doc_ids"])


def test_dense_file_without_positions_uses_file_order_for_the_window():
    arrays = dense(LENGTHS)
    del arrays["target_positions"]
    dataset = HardNegativeSequenceDataset(arrays, exclude_window=1, seed=2)
    idx = np.arange(len(dataset))
    negatives = dataset.negative_indices(idx)
    docs = arrays["doc_ids"]
    size = np.bincount(docs)[docs]
    assert (docs[negatives] == docs)[size >= 2].all()
    in_window = (np.abs(negatives - idx) <= 1) & (docs[negatives] == docs)
    assert in_window.sum() == dataset.fallback_counts["window_relaxed"]


def test_dense_file_without_doc_ids_cannot_serve_negatives():
    arrays = dense(LENGTHS)
    del arrays["doc_ids"]
    assert len(SequenceDataset(arrays)) == 15  # plain access still works
    with pytest.raises(ToolError, match="MISSING_DOC_IDS"):
        HardNegativeSequenceDataset(arrays)


def test_pickled_dataset_reopens_its_file_and_draws_the_same(tmp_path):
    write_npz(tmp_path / "s.npz", compact(LENGTHS))
    dataset = HardNegativeSequenceDataset(tmp_path / "s.npz", seed=2, exclude_window=1)
    dataset.set_epoch(6)
    payload = pickle.dumps(dataset)
    assert len(payload) < 2000  # the path travels, not the vectors
    copy = pickle.loads(payload)
    idx = np.arange(len(dataset))
    assert np.array_equal(copy.negative_indices(idx), dataset.negative_indices(idx))
    assert isinstance(copy.vectors, np.memmap)


def test_dataloader_workers_serve_the_same_negatives_as_the_main_process(tmp_path):
    write_npz(tmp_path / "s.npz", compact(LENGTHS))
    dataset = HardNegativeSequenceDataset(tmp_path / "s.npz", seed=4)
    dataset.set_epoch(2)
    loader = DataLoader(dataset, batch_size=4, shuffle=False, collate_fn=collate_batch,
                        num_workers=2, multiprocessing_context="spawn")
    batches = list(loader)
    assert all(isinstance(part, torch.Tensor) for part in batches[0])
    negatives = torch.cat([b[2] for b in batches]).numpy()
    expected = dataset.targets(dataset.negative_indices(np.arange(len(dataset))))
    assert np.array_equal(negatives, expected)
    assert batches[0][0].shape == (4, 2, D)


@pytest.mark.parametrize("collate", [None, collate_batch])
def test_default_and_batch_collate_give_the_same_batches(collate):
    dataset = HardNegativeSequenceDataset(compact(LENGTHS), seed=8)
    loader = DataLoader(torch.utils.data.Subset(dataset, range(6)), batch_size=3,
                        **({"collate_fn": collate} if collate else {}))
    context, target, negative = next(iter(loader))
    assert context.shape == (3, 2, D) and negative.shape == (3, D)
    expected = dataset.get_batch([0, 1, 2])
    assert np.array_equal(negative.numpy(), expected[2])
    assert np.array_equal(context.numpy(), expected[0])


def test_diverse_batch_sampler_caps_each_document_in_every_batch():
    from uncollapse.samplers.diverse import DiverseBatchSampler

    dataset = HardNegativeSequenceDataset(compact([30, 25, 12, 40, 18, 22, 9, 15]), seed=1)
    sampler = DiverseBatchSampler(dataset.doc_ids, batch_size=8, max_per_doc=2, seed=3)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_batch)
    sampler.set_epoch(0)
    planned = list(sampler)
    sampler.set_epoch(0)
    batches = 0
    for (context, target, negative), indices in zip(loader, planned, strict=True):
        assert (context[:, :, 1] == target[:, None, 1]).all()  # context in the same document
        docs = target[:, 1].long()
        assert torch.bincount(docs).max() <= 2
        assert (negative[:, 1] == target[:, 1]).all()        # same document
        assert (negative[:, 0] != target[:, 0]).all()        # never the target row
        assert np.array_equal(target[:, 0].numpy(),
                              dataset.targets(np.asarray(indices))[:, 0])
        batches += 1
    assert batches == len(sampler) > 0


def test_two_samples_at_one_document_position_are_named_with_what_to_do():
    arrays = dense(LENGTHS)
    arrays["target_positions"] = arrays["target_positions"].copy()
    arrays["target_positions"][5] = arrays["target_positions"][4]  # samples 4 and 5 collide
    doc, position = int(arrays["doc_ids"][4]), int(arrays["target_positions"][4])
    with pytest.raises(ToolError, match=rf"samples 4 and 5 .*doc_id {doc}.* position "
                                        rf"{position}.*validate sequences"):
        HardNegativeSequenceDataset(arrays)


def test_set_epoch_between_passes_reaches_the_loaders_workers(tmp_path):
    write_npz(tmp_path / "s.npz", compact([40, 30, 50]))
    dataset = HardNegativeSequenceDataset(tmp_path / "s.npz", seed=4)
    loader = DataLoader(dataset, batch_size=16, collate_fn=collate_batch, num_workers=1)
    every = np.arange(len(dataset))
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        negatives = torch.cat([b[2] for b in loader]).numpy()
        assert np.array_equal(negatives, dataset.targets(dataset.negative_indices(every)))
        if epoch == 0:
            first = negatives
    assert not np.array_equal(first, negatives)
