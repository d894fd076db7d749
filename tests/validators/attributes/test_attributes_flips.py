"""AttributeFlipDataset: flips always applied, uniform, deterministic; and the flip audit."""

from __future__ import annotations

import textwrap

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from uncollapse.cli import main
from uncollapse.data.attributes.contract import combination_ids, decode_combination_ids
from uncollapse.data.attributes.dataset import AttributeFlipDataset
from uncollapse.validators.attributes.flips import audit_flips


def dataset(n=500, a=5, **kwargs) -> AttributeFlipDataset:
    rng = np.random.default_rng(3)
    return AttributeFlipDataset(rng.standard_normal((n, 4)).astype(np.float32),
                                rng.integers(0, 2, (n, a)), **kwargs)


@settings(max_examples=80, deadline=None)
@given(a=st.integers(1, 12), data=st.data(), seed=st.integers(0, 2**63 - 1),
       epoch=st.integers(0, 10**6))
def test_every_sample_flips_between_min_and_max_for_any_seed(a, data, seed, epoch):
    min_flips = data.draw(st.integers(1, a))
    max_flips = data.draw(st.integers(min_flips, a))
    ds = dataset(n=64, a=a, min_flips=min_flips, max_flips=max_flips, seed=seed)
    ds.set_epoch(epoch)
    batch = ds.batch(np.arange(64))
    differ = (batch["source_attributes"] != batch["target_attributes"]).sum(1)
    assert differ.min() >= min_flips and differ.max() <= max_flips
    assert torch.equal(differ, batch["flips"])
    decoded = decode_combination_ids(batch["combination_id"].numpy(), a)
    np.testing.assert_array_equal(decoded, batch["target_attributes"].numpy())


def test_flip_count_and_choice_of_attributes_are_uniform():
    ds = dataset(n=30000, a=5, min_flips=1, max_flips=3, seed=11)
    batch = ds.batch(np.arange(30000))
    counts = np.bincount(batch["flips"].numpy(), minlength=4)[1:] / 30000
    np.testing.assert_allclose(counts, [1 / 3] * 3, atol=0.015)
    flipped = (batch["source_attributes"] != batch["target_attributes"]).numpy()
    # each attribute flips with probability E[k] / A = 2 / 5
    np.testing.assert_allclose(flipped.mean(0), [0.4] * 5, atol=0.015)
    pairs = flipped[batch["flips"].numpy() == 2]
    pair_ids = combination_ids(pairs)
    shares = np.unique(pair_ids, return_counts=True)[1] / len(pair_ids)
    assert len(shares) == 10
    np.testing.assert_allclose(shares, [0.1] * 10, atol=0.02)


def test_targets_depend_only_on_seed_epoch_and_index():
    ds = dataset(seed=5)
    whole = ds.batch(np.arange(500))["target_attributes"]
    order = np.random.default_rng(0).permutation(500)
    shuffled = ds.batch(order)["target_attributes"]
    assert torch.equal(shuffled, whole[order])
    assert torch.equal(ds[17]["target_attributes"], whole[17])
    items = ds.__getitems__([17, 3])
    assert torch.equal(items[1]["target_attributes"], whole[3])
    assert torch.equal(dataset(seed=5).batch([17])["target_attributes"][0], whole[17])
    assert not torch.equal(dataset(seed=6).batch(np.arange(500))["target_attributes"], whole)


def test_set_epoch_changes_flips_and_returning_to_an_epoch_repeats_them():
    ds = dataset(seed=1)
    first = ds.batch(np.arange(500))["target_attributes"]
    ds.set_epoch(1)
    second = ds.batch(np.arange(500))["target_attributes"]
    assert not torch.equal(first, second)
    ds.set_epoch(0)
    assert torch.equal(ds.batch(np.arange(500))["target_attributes"], first)
    np.testing.assert_array_equal(ds.target_combination_ids(epoch=1),
                                  combination_ids(second.numpy()))


def test_dataloader_workers_see_the_same_flips_as_the_main_process():
    ds = dataset(n=256, seed=9)
    ds.set_epoch(3)
    expected = ds.batch(np.arange(256))
    sampler = torch.utils.data.BatchSampler(range(256), batch_size=32, drop_last=False)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=2)
    got = list(loader)
    assert torch.equal(torch.cat([b["target_attributes"] for b in got]),
                       expected["target_attributes"])
    assert torch.equal(torch.cat([b["embedding"] for b in got]), expected["embedding"])
    assert got[0]["combination_id"].dtype == torch.int64


def test_combination_ids_are_bit_packed_in_column_order():
    rows = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 1]])
    np.testing.assert_array_equal(combination_ids(rows), [0, 1, 2, 7])
    np.testing.assert_array_equal(decode_combination_ids(np.array([5]), 3), [[1, 0, 1]])
    with pytest.raises(ValueError, match="at most 62"):
        combination_ids(np.zeros((1, 63), dtype=np.int8))


def test_dataframe_input_keeps_the_attribute_names():
    table = pl.DataFrame({"Smiling": [0, 1, 1], "Male": [1, 0, 1]})
    ds = AttributeFlipDataset(np.zeros((3, 2)), table, max_flips=1)
    assert ds.attribute_names == ["Smiling", "Male"]
    assert ds[2]["source_attributes"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("kwargs, message", [
    ({"min_flips": 0}, "a sample must always flip"),
    ({"max_flips": 6}, "number of attributes"),
    ({"attributes": np.full((500, 5), -1)}, "must be 0/1"),
    ({"embeddings": np.zeros((3, 4))}, "3 embeddings but 500"),
])
def test_invalid_arguments_are_refused(kwargs, message):
    rng = np.random.default_rng(0)
    args = {"embeddings": np.zeros((500, 4)), "attributes": rng.integers(0, 2, (500, 5))}
    args.update({k: kwargs.pop(k) for k in list(kwargs) if k in args})
    with pytest.raises(ValueError, match=message):
        AttributeFlipDataset(args["embeddings"], args["attributes"], **kwargs)


# ---- the audit -----------------------------------------------------------------------------
class HalfFlips(torch.utils.data.Dataset):
    """The broken augmentation: flip one attribute with probability 1/2 (seeded per item)."""

    def __init__(self, attributes, seed=0, stateful=False):
        self.attributes, self.seed, self.stateful = attributes, seed, stateful
        self.rng = np.random.default_rng(seed)

    def __len__(self):
        return len(self.attributes)

    def __getitem__(self, i):
        rng = self.rng if self.stateful else np.random.default_rng([self.seed, i])
        target = self.attributes[i].copy()
        if rng.random() < 0.5:
            j = rng.integers(len(target))
            target[j] = 1 - target[j]
        return (np.zeros(2), self.attributes[i], target)


def test_audit_passes_attribute_flip_dataset_with_stats():
    report = audit_flips(dataset(n=1000, min_flips=1, max_flips=2, seed=4), batch_size=100)
    assert report.ok and report.findings == []
    assert report.stats["share_with_flip"] == 1.0
    assert set(report.stats["flip_counts"]) == {"1", "2"}
    assert abs(report.stats["flip_counts"]["1"] - 0.5) < 0.06
    assert report.stats["batches"] == 10 and report.stats["declared_flips"] == [1, 2]
    assert report.stats["combinations_per_batch"]["min"] > 1


def test_audit_fails_a_flip_half_the_time_augmentation():
    attributes = np.random.default_rng(0).integers(0, 2, (1000, 4))
    report = audit_flips(HalfFlips(attributes), batch_size=128)
    (finding,) = report.findings
    assert finding.code == "FLIPS_NOT_ALWAYS_APPLIED" and finding.severity == "error"
    assert 0.44 < report.stats["share_with_flip"] < 0.56
    assert finding.count == round((1 - report.stats["share_with_flip"]) * 1000)
    assert report.exit_code() == 1


def test_audit_flags_flips_that_change_when_asked_again():
    attributes = np.random.default_rng(0).integers(0, 2, (300, 4))
    report = audit_flips(HalfFlips(attributes, stateful=True), batch_size=100)
    assert "FLIPS_NOT_REPRODUCIBLE" in report.codes()


def test_audit_flags_counts_outside_the_declared_range_and_non_binary_values():
    ds = dataset(n=200, min_flips=1, max_flips=3, seed=2)
    report = audit_flips(ds, min_flips=1, max_flips=1, batch_size=50)
    (finding,) = report.findings
    assert finding.code == "FLIPS_OUT_OF_RANGE" and finding.examples[0]["flips"] > 1

    class MinusOne(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"source": np.array([-1, 1]), "target": np.array([1, 1])}

    assert audit_flips(MinusOne()).codes()[0] == "FLIP_TARGETS_NOT_BINARY"


def test_audit_warns_about_batches_of_one_target_combination():
    ds = AttributeFlipDataset(np.zeros((64, 1)), np.zeros((64, 1), dtype=np.int8),
                              max_flips=1)
    report = audit_flips(ds, batch_size=16)
    assert report.codes() == ["FLIP_BATCH_SINGLE_COMBINATION"]
    assert report.stats["combinations_per_batch"]["max"] == 1


def test_validate_flips_command_passes_the_dataset_and_fails_half_flips(tmp_path):
    rng = np.random.default_rng(0)
    table = pl.DataFrame({"image_id": [str(i) for i in range(400)],
                          "Smiling": rng.integers(0, 2, 400).astype(np.int8),
                          "Male": rng.integers(0, 2, 400).astype(np.int8)})
    table.write_parquet(tmp_path / "attrs.parquet")
    good = CliRunner().invoke(main, ["validate", "flips", "--table",
                                     str(tmp_path / "attrs.parquet"), "--quiet",
                                     "--format", "json"])
    assert good.exit_code == 0, good.output
    assert '"share_with_flip": 1.0' in good.output
    (tmp_path / "half.py").write_text(textwrap.dedent("""
        import numpy as np

        class Half:
            def __len__(self):
                return 200

            def __getitem__(self, i):
                source = np.array([i % 2, 1])
                target = source.copy()
                if i % 2:
                    target[0] = 0
                return {"source_attributes": source, "target_attributes": target}
    """))
    bad = CliRunner().invoke(main, ["validate", "flips", "--dataset",
                                    f"{tmp_path / 'half.py'}:Half", "--quiet"])
    assert bad.exit_code == 1 and "FLIPS_NOT_ALWAYS_APPLIED" in bad.output
    neither = CliRunner().invoke(main, ["validate", "flips"])
    assert neither.exit_code == 2 and "exactly one of" in neither.output


@pytest.mark.parametrize("seed", [-1, -(2**40), 2**64 + 5])
def test_any_integer_seed_draws_deterministic_flips(seed):
    data = dataset(n=50, a=4, seed=seed)
    first = data.batch(np.arange(50))
    again = data.batch(np.arange(50))
    assert torch.equal(first["target_attributes"], again["target_attributes"])
    assert ((first["flips"] >= 1) & (first["flips"] <= 2)).all()
    other = dataset(n=50, a=4, seed=seed + 1).batch(np.arange(50))
    assert not torch.equal(first["target_attributes"], other["target_attributes"])


class _WideFlips:
    """A plain user dataset with 70 attributes (more than a combination id can pack)."""

    def __init__(self):
        self.source = np.random.default_rng(0).integers(0, 2, (50, 70))

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        target = self.source[i].copy()
        target[i % 70] ^= 1
        return {"source": self.source[i], "target": target}


def test_audit_of_a_dataset_with_more_attributes_than_an_id_packs_counts_combinations():
    report = audit_flips(_WideFlips(), batch_size=10)
    assert report.ok
    assert report.stats["share_with_flip"] == 1.0
    assert report.stats["flip_counts"] == {"1": 1.0}
    assert report.stats["combinations_per_batch"] == {"min": 10, "mean": 10.0, "max": 10}


def test_loader_with_batches_as_indices_gives_the_batch_sampler_batches_whole():
    # DataLoader(data, sampler=batches, batch_size=None) hands each index list to __getitem__,
    # which draws the batch in one vectorised call: no per-row dicts, no per-row collate
    ds = dataset(n=300, a=3, seed=4)
    batches = [list(range(k, 300, 7)) for k in range(7)]
    per_row = list(torch.utils.data.DataLoader(ds, batch_sampler=batches, num_workers=2))
    whole = list(torch.utils.data.DataLoader(ds, sampler=batches, batch_size=None,
                                             num_workers=2))
    assert len(whole) == len(per_row) == 7
    for a, b in zip(per_row, whole, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
    assert whole[2]["index"].tolist() == batches[2]
