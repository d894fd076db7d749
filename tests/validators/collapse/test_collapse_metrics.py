"""Each collapse metric against an independent reference and on cases with a known answer."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import adjusted_rand_score, silhouette_score

from uncollapse.validators.collapse import metrics

SETTINGS = settings(max_examples=40, deadline=None)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ------------------------------------------------------------------------------------ inputs


def test_numpy_input_is_shared_not_copied(gaussian):
    x = gaussian(0, 10, 4)
    tensor = metrics.as_tensor(x)
    assert np.shares_memory(tensor.numpy(), x)


def test_tensor_input_stays_on_its_device_and_half_precision_is_measured_in_float32():
    x = torch.randn(8, 3, dtype=torch.float16)
    converted = metrics.as_float(x)
    assert converted.device == x.device and converted.dtype == torch.float32


def test_numpy_and_torch_inputs_give_the_same_values(gaussian):
    x, y = gaussian(1, 200, 16), gaussian(2, 200, 16)
    labels = np.repeat(np.arange(20), 10)
    assert metrics.effective_rank(x) == pytest.approx(metrics.effective_rank(torch.from_numpy(x)))
    assert metrics.silhouette(x, labels) == pytest.approx(
        metrics.silhouette(torch.from_numpy(x), torch.from_numpy(labels)))
    assert metrics.contrastive_accuracy(x, y) == pytest.approx(
        metrics.contrastive_accuracy(torch.from_numpy(x), torch.from_numpy(y)))


# ------------------------------------------------------------------- prediction vs target


def test_mean_vector_baseline_matches_a_loop(gaussian):
    pred, targets = gaussian(3, 30, 8), gaussian(4, 30, 8) + 2.0
    mean = targets.mean(axis=0)
    expected_pred = np.mean([cos(p, t) for p, t in zip(pred, targets, strict=True)])
    expected_mean = np.mean([cos(mean, t) for t in targets])
    expected_pred_mean = np.mean([cos(p, mean) for p in pred])
    result = metrics.mean_vector_baseline(pred, targets)
    assert result["cos_pred_target"] == pytest.approx(expected_pred, abs=1e-5)
    assert result["cos_mean_target"] == pytest.approx(expected_mean, abs=1e-5)
    assert result["cos_pred_mean"] == pytest.approx(expected_pred_mean, abs=1e-5)
    assert result["margin"] == pytest.approx(expected_pred - expected_mean, abs=1e-5)


def test_predicting_the_mean_vector_has_zero_margin(gaussian):
    targets = gaussian(5, 100, 8) + 1.0
    pred = np.tile(targets.mean(axis=0), (100, 1))
    result = metrics.mean_vector_baseline(pred, targets)
    assert result["margin"] == pytest.approx(0.0, abs=1e-6)
    assert result["cos_pred_mean"] == pytest.approx(1.0, abs=1e-6)


def test_moment_comparison_matches_numpy_per_dimension(gaussian):
    targets = gaussian(6, 500, 6) * np.arange(1, 7) + np.arange(6)
    pred = gaussian(7, 500, 6) * 0.5 + 1.0
    result = metrics.moment_comparison(pred, targets, worst=3)
    ratio = pred.std(axis=0) / targets.std(axis=0)
    shift = np.abs(pred.mean(axis=0) - targets.mean(axis=0)) / targets.std(axis=0)
    np.testing.assert_allclose(result["std_ratio"], ratio, rtol=1e-4)
    np.testing.assert_allclose(result["mean_shift"], shift, rtol=1e-4)
    assert result["std_ratio_median"] == pytest.approx(np.median(ratio), rel=1e-4)
    assert result["mean_shift_max"] == pytest.approx(shift.max(), rel=1e-4)
    worst = np.argsort(-np.abs(np.log(ratio)))[:3]
    assert [row["dim"] for row in result["worst_std_dims"]] == worst.tolist()
    assert [row["dim"] for row in result["worst_mean_dims"]] == np.argsort(-shift)[:3].tolist()


def test_moment_comparison_sees_a_rescaled_prediction_and_skips_constant_target_dims(gaussian):
    targets = gaussian(8, 400, 5)
    targets[:, 4] = 0.25
    result = metrics.moment_comparison(targets * 3.0, targets)
    assert result["std_ratio_median"] == pytest.approx(3.0, rel=1e-5)
    assert result["constant_target_dims"] == 1
    assert math.isnan(result["std_ratio"][4])
    assert 4 not in [row["dim"] for row in result["worst_std_dims"]]


# ------------------------------------------------------------------------------- spectrum


@SETTINGS
@given(n=st.integers(2, 60), d=st.integers(1, 40), seed=st.integers(0, 10_000),
       center=st.booleans())
def test_singular_values_match_numpy_svd(n, d, seed, center, gaussian):
    x = gaussian(seed, n, d) * np.geomspace(1, 1e-3, d).astype(np.float32)
    reference = x.astype(np.float64)
    if center:
        reference = reference - reference.mean(axis=0)
    expected = np.linalg.svd(reference, compute_uv=False)
    got = metrics.singular_values(x, center=center).numpy()
    # a singular value near zero comes from a Gram eigenvalue with float64 rounding of about
    # eps * sigma_max^2, so it is exact to about sqrt(eps) * sigma_max = 1.5e-8 sigma_max
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=5e-8 * expected.max())


@SETTINGS
@given(n=st.integers(2, 80), d=st.integers(1, 50), seed=st.integers(0, 10_000))
def test_effective_rank_matches_rankme_on_numpy_svd(n, d, seed, gaussian):
    x = gaussian(seed, n, d) * np.geomspace(1, 1e-2, d).astype(np.float32)
    sigma = np.linalg.svd(x.astype(np.float64), compute_uv=False)
    p = sigma / sigma.sum() + 1e-7
    expected = math.exp(-(p * np.log(p)).sum())
    assert metrics.effective_rank(x) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("rank", [1, 3, 10, 40])
def test_rank_r_data_with_a_flat_spectrum_has_effective_rank_r(rank):
    rng = np.random.default_rng(rank)
    left, _ = np.linalg.qr(rng.normal(size=(600, rank)))
    right, _ = np.linalg.qr(rng.normal(size=(128, rank)))
    x = (left @ right.T).astype(np.float32)
    assert metrics.effective_rank(x) == pytest.approx(rank, rel=1e-3)


@pytest.mark.parametrize("rank", [2, 8, 32])
def test_random_rank_r_data_has_effective_rank_at_most_and_near_r(rank):
    rng = np.random.default_rng(rank)
    x = (rng.normal(size=(2000, rank)) @ rng.normal(size=(rank, 256))).astype(np.float32)
    value = metrics.effective_rank(x)
    assert 0.75 * rank < value <= rank * 1.001


def test_effective_rank_of_a_tall_768_dim_set_matches_numpy(gaussian):
    x = gaussian(9, 3000, 768) * np.geomspace(1, 1e-3, 768).astype(np.float32)
    sigma = np.linalg.svd(x.astype(np.float64), compute_uv=False)
    p = sigma / sigma.sum() + 1e-7
    assert metrics.effective_rank(x) == pytest.approx(math.exp(-(p * np.log(p)).sum()),
                                                      rel=1e-6)


def test_effective_rank_of_zeros_is_one():
    assert metrics.effective_rank(np.zeros((5, 3), dtype=np.float32)) == 1.0


# ------------------------------------------------------------------ alignment, uniformity


def test_alignment_matches_a_loop_and_known_values(gaussian):
    x, y = gaussian(10, 20, 5), gaussian(11, 20, 5)
    expected = np.mean([np.linalg.norm(a / np.linalg.norm(a) - b / np.linalg.norm(b)) ** 2
                        for a, b in zip(x, y, strict=True)])
    assert metrics.alignment(x, y) == pytest.approx(expected, rel=1e-5)
    assert metrics.alignment(x, 3 * x) == pytest.approx(0.0, abs=1e-6)
    assert metrics.alignment(x, -x) == pytest.approx(4.0, rel=1e-6)


def test_uniformity_matches_the_papers_pdist_formula(gaussian):
    x = gaussian(12, 50, 8)
    u = torch.from_numpy(unit(x))
    expected = torch.pdist(u, p=2).pow(2).mul(-2).exp().mean().log().item()
    assert metrics.uniformity(x) == pytest.approx(expected, abs=1e-5)


def test_uniformity_matches_a_pair_loop(gaussian):
    x = unit(gaussian(13, 12, 3).astype(np.float64))
    terms = [math.exp(-2 * np.sum((x[i] - x[j]) ** 2))
             for i, j in itertools.permutations(range(12), 2)]
    assert metrics.uniformity(x, t=2) == pytest.approx(math.log(np.mean(terms)), abs=1e-9)


def test_one_repeated_vector_has_uniformity_zero(gaussian):
    x = np.tile(gaussian(14, 1, 16), (100, 1))
    assert metrics.uniformity(x) == pytest.approx(0.0, abs=1e-6)


def test_uniformity_on_a_seeded_subset_is_reproducible_and_that_subset(gaussian):
    x = gaussian(15, 300, 8)
    index = metrics.sample_rows(300, 64, seed=3, device="cpu")
    assert metrics.uniformity(x, max_samples=64, seed=3) == pytest.approx(
        metrics.uniformity(x[index.numpy()], max_samples=None))
    assert metrics.uniformity(x, max_samples=64, seed=3) == metrics.uniformity(
        x, max_samples=64, seed=3)
    assert metrics.uniformity(x, max_samples=64, seed=4) != metrics.uniformity(
        x, max_samples=64, seed=3)


# ----------------------------------------------------------------------- spread, variance


def test_variance_floor_matches_the_vicreg_formula(gaussian):
    x = gaussian(16, 100, 6) * np.array([0.1, 0.5, 1.0, 2.0, 0.01, 1.5], dtype=np.float32)
    std = np.sqrt(x.astype(np.float64).var(axis=0, ddof=1) + 1e-4)
    result = metrics.variance_floor(x, gamma=1.0)
    assert result["loss"] == pytest.approx(np.maximum(0, 1 - std).mean(), rel=1e-5)
    assert result["share_below"] == pytest.approx(np.mean(std < 1), abs=1e-9)
    assert result["min_std"] == pytest.approx(std.min(), rel=1e-5)


def test_relative_spread_is_zero_for_one_point_and_one_for_centred_data(gaussian):
    point = np.tile(gaussian(17, 1, 8) + 5, (50, 1))
    assert metrics.relative_spread(point) == pytest.approx(0.0, abs=1e-6)
    centred = gaussian(18, 500, 8)
    centred -= centred.mean(axis=0)
    assert metrics.relative_spread(centred) == pytest.approx(1.0, rel=1e-5)


def test_within_set_cosine_matches_loops(gaussian):
    sets = gaussian(19, 4 * 5 * 6, 1).reshape(4, 5, 6) + 0.3
    cosines, within, across = [], [], []
    for one in sets:
        for i, j in itertools.combinations(range(5), 2):
            cosines.append(cos(one[i], one[j]))
        within.append(np.mean([np.sum((one[i] - one[j]) ** 2)
                               for i, j in itertools.permutations(range(5), 2)]))
    flat = sets.reshape(20, 6)
    across = np.mean([np.sum((flat[a] - flat[b]) ** 2)
                      for a, b in itertools.permutations(range(20), 2)])
    result = metrics.within_set_cosine(sets)
    assert result["mean"] == pytest.approx(np.mean(cosines), abs=1e-5)
    assert result["std"] == pytest.approx(np.std(cosines), abs=1e-5)
    assert result["min"] == pytest.approx(min(cosines), abs=1e-5)
    assert result["max"] == pytest.approx(max(cosines), abs=1e-5)
    assert result["spread_ratio"] == pytest.approx(np.mean(within) / across, rel=1e-4)


def test_identical_slots_have_spread_zero_and_a_shared_offset_does_not_change_the_ratio(gaussian):
    base = gaussian(20, 30, 16)
    identical = np.repeat(base[:, None, :], 4, axis=1)
    assert metrics.within_set_cosine(identical)["spread_ratio"] == pytest.approx(0.0, abs=1e-6)
    assert metrics.within_set_cosine(identical)["mean"] == pytest.approx(1.0, abs=1e-5)
    slots = gaussian(21, 30 * 4, 16).reshape(30, 4, 16)
    shifted = metrics.within_set_cosine(slots + 50.0)
    assert shifted["spread_ratio"] == pytest.approx(
        metrics.within_set_cosine(slots)["spread_ratio"], rel=1e-3)
    assert shifted["mean"] > 0.99


# ---------------------------------------------------------------------------- by labels


@SETTINGS
@given(n=st.integers(4, 60), k=st.integers(2, 6), d=st.integers(2, 12),
       seed=st.integers(0, 10_000))
def test_silhouette_matches_sklearn_cosine(n, k, d, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    if not 2 <= len(np.unique(labels)) <= n - 1:
        labels[0], labels[1] = 0, 1
        if len(np.unique(labels)) > n - 1:
            labels[2] = labels[3]
    x = rng.normal(size=(n, d)) + rng.normal(size=(k, d))[labels] * 2
    expected = silhouette_score(x, labels, metric="cosine")
    assert metrics.silhouette(x, labels) == pytest.approx(expected, abs=1e-9)


def test_silhouette_with_string_labels_and_singletons_matches_sklearn(gaussian):
    x = gaussian(22, 9, 4).astype(np.float64)
    labels = np.array(["a", "a", "b", "b", "b", "c", "d", "d", "a"])
    assert metrics.silhouette(x, labels) == pytest.approx(
        silhouette_score(x, labels, metric="cosine"), abs=1e-9)


def test_sampled_silhouette_is_sklearn_on_the_seeded_subset():
    rng = np.random.default_rng(23)
    labels = rng.integers(0, 8, 900)
    x = rng.normal(size=(900, 10)) + rng.normal(size=(8, 10))[labels]
    index = metrics.sample_rows(900, 200, seed=5, device="cpu").numpy()
    expected = silhouette_score(x[index], labels[index], metric="cosine")
    assert metrics.silhouette(x, labels, max_samples=200, seed=5) == pytest.approx(expected,
                                                                                   abs=1e-9)


def test_each_label_on_one_point_has_silhouette_one(gaussian):
    centres = gaussian(24, 5, 16)
    labels = np.repeat(np.arange(5), 20)
    assert metrics.silhouette(centres[labels], labels) == pytest.approx(1.0, abs=1e-9)


def test_cluster_purity_matches_a_loop():
    rng = np.random.default_rng(25)
    clusters, labels = rng.integers(0, 7, 300), rng.integers(0, 4, 300)
    expected = sum(np.bincount(labels[clusters == c]).max() for c in np.unique(clusters)) / 300
    assert metrics.cluster_purity(clusters, labels) == pytest.approx(expected)
    assert metrics.cluster_purity(labels, labels) == 1.0


def test_knn_purity_matches_a_loop():
    rng = np.random.default_rng(26)
    labels = rng.integers(0, 5, 120)
    x = rng.normal(size=(120, 6)) + rng.normal(size=(5, 6))[labels]
    u = unit(x)
    shares = []
    for i in range(120):
        similarity = u @ u[i]
        similarity[i] = -np.inf
        neighbours = np.argsort(-similarity)[:7]
        shares.append(np.mean(labels[neighbours] == labels[i]))
    assert metrics.knn_purity(x, labels, k=7) == pytest.approx(np.mean(shares), abs=1e-9)


# ------------------------------------------------------------------------------ retrieval


def contrastive_accuracy_loop(pred, targets, groups, metric):
    def distance(i, j):
        if metric == "l2":
            return np.linalg.norm(pred[i] - targets[j])
        return 1 - cos(pred[i], targets[j])

    shares = []
    for i in range(len(pred)):
        distractors = [j for j in range(len(pred)) if groups[j] != groups[i]]
        if distractors:
            shares.append(np.mean([distance(i, j) > distance(i, i) for j in distractors]))
    return np.mean(shares)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_contrastive_accuracy_matches_a_loop(metric):
    rng = np.random.default_rng(27)
    targets = rng.normal(size=(40, 8))
    pred = targets + rng.normal(size=(40, 8)) * 1.5
    groups = rng.integers(0, 15, 40)
    assert metrics.contrastive_accuracy(pred, targets, groups, metric=metric) == pytest.approx(
        contrastive_accuracy_loop(pred, targets, groups, metric), abs=1e-9)
    assert metrics.contrastive_accuracy(pred, targets, metric=metric) == pytest.approx(
        contrastive_accuracy_loop(pred, targets, np.arange(40), metric), abs=1e-9)


def test_a_constant_prediction_has_contrastive_accuracy_one_half(gaussian):
    targets = gaussian(28, 101, 8).astype(np.float64)
    pred = np.tile(targets.mean(axis=0), (101, 1))
    assert metrics.contrastive_accuracy(pred, targets) == pytest.approx(0.5, abs=1e-12)


def recall_loop(queries, gallery, query_groups, gallery_groups, k):
    hits = []
    for i in range(len(queries)):
        similarity = np.array([cos(queries[i], g) for g in gallery])
        positives = gallery_groups == query_groups[i]
        if not positives.any():
            continue
        top = np.argsort(-similarity, kind="stable")[:k]
        hits.append(positives[top].any())
    return np.mean(hits)


def test_recall_at_k_with_multi_positive_groups_matches_a_loop():
    rng = np.random.default_rng(29)
    groups = np.repeat(np.arange(30), 3)
    gallery = rng.normal(size=(90, 8))
    queries = gallery[np.roll(np.arange(90), 1)] + rng.normal(size=(90, 8))
    result = metrics.recall_at_k(queries, gallery, groups, ks=(1, 3, 10))
    for k in (1, 3, 10):
        assert result[f"recall@{k}"] == pytest.approx(
            recall_loop(queries, gallery, groups, groups, k), abs=1e-12)


def test_recall_at_k_separate_gallery_matches_a_loop():
    rng = np.random.default_rng(30)
    images = rng.normal(size=(20, 8))
    caption_groups = rng.integers(0, 22, 70)  # groups 20 and 21 have no image
    captions = np.vstack([images, rng.normal(size=(2, 8))])[caption_groups] + \
        rng.normal(size=(70, 8))
    result = metrics.recall_at_k(captions, images, caption_groups,
                                 gallery_groups=np.arange(20), ks=(1, 5))
    for k in (1, 5):
        assert result[f"recall@{k}"] == pytest.approx(
            recall_loop(captions, images, caption_groups, np.arange(20), k), abs=1e-12)


def test_perfect_predictions_have_recall_one_and_contrastive_accuracy_one(gaussian):
    targets = gaussian(31, 50, 16)
    assert metrics.recall_at_k(targets, targets, ks=(1,))["recall@1"] == 1.0
    assert metrics.contrastive_accuracy(targets, targets) == 1.0


# ------------------------------------------------------------------------------------ ARI


@SETTINGS
@given(n_images=st.integers(1, 4), size=st.integers(2, 12), k_true=st.integers(1, 5),
       k_pred=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_ari_matches_sklearn_per_image(n_images, size, k_true, k_pred, seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k_true, (n_images, size, size))
    pred = np.where(rng.random((n_images, size, size)) < 0.6, true,
                    rng.integers(0, k_pred, (n_images, size, size)))
    expected = [adjusted_rand_score(t.ravel(), p.ravel()) for t, p in zip(true, pred,
                                                                           strict=True)]
    np.testing.assert_allclose(metrics.ari_per_image(true, pred), expected, atol=1e-10)
    assert metrics.adjusted_rand_index(true, pred) == pytest.approx(np.mean(expected), abs=1e-10)


@SETTINGS
@given(n_images=st.integers(1, 4), size=st.integers(2, 10), seed=st.integers(0, 10_000))
def test_foreground_ari_matches_sklearn_on_foreground_pixels(n_images, size, seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 4, (n_images, size, size))
    pred = rng.integers(0, 5, (n_images, size, size))
    expected = []
    for t, p in zip(true, pred, strict=True):
        keep = t.ravel() != 0
        if keep.any():
            expected.append(adjusted_rand_score(t.ravel()[keep], p.ravel()[keep]))
    got = metrics.foreground_ari(true, pred)
    if expected:
        assert got == pytest.approx(np.mean(expected), abs=1e-10)
    else:
        assert math.isnan(got)


def test_ari_is_one_for_relabelled_slots_and_soft_masks_take_the_argmax():
    true = np.random.default_rng(32).integers(0, 4, (3, 8, 8))
    relabelled = (true + 2) % 4 * 7
    assert metrics.adjusted_rand_index(true, relabelled) == pytest.approx(1.0)
    soft = np.eye(4)[true].transpose(0, 3, 1, 2)  # [N, K, H, W]
    assert metrics.adjusted_rand_index(true, torch.from_numpy(soft)) == pytest.approx(1.0)


def test_fg_ari_ignores_how_the_background_is_split():
    true = np.zeros((1, 8, 8), dtype=np.int64)
    true[0, :4, :4], true[0, 4:, 4:] = 1, 2
    pred = np.where(true > 0, true, np.random.default_rng(33).integers(3, 6, (1, 8, 8)))
    assert metrics.foreground_ari(true, pred) == 1.0
    assert metrics.adjusted_rand_index(true, pred) < 0.9


def test_ari_with_large_and_negative_ids_matches_sklearn():
    rng = np.random.default_rng(34)
    true = rng.choice([-1, 5, 70_000], size=(2, 9, 9))
    pred = np.where(rng.random((2, 9, 9)) < 0.5, true, rng.choice([3, 9_999], size=(2, 9, 9)))
    expected = [adjusted_rand_score(t.ravel(), p.ravel()) for t, p in zip(true, pred,
                                                                           strict=True)]
    np.testing.assert_allclose(metrics.ari_per_image(true, pred), expected, atol=1e-10)


def test_label_spread_is_the_mean_squared_distance_to_the_label_mean_over_the_norm():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(60, 7))
    labels = rng.integers(0, 4, 60)
    centres = np.stack([x[labels == k].mean(axis=0) for k in range(4)])
    expected = np.mean([np.sum((x[i] - centres[labels[i]]) ** 2) for i in range(60)]) / np.mean(
        [np.sum(row ** 2) for row in x])
    assert metrics.label_spread(x, labels) == pytest.approx(expected, rel=1e-9)
    assert metrics.label_spread(centres[labels], labels) == pytest.approx(0.0, abs=1e-12)
    assert metrics.label_spread(np.zeros((4, 3)), np.arange(4) % 2) == 0.0


def test_label_spread_leaves_out_labels_of_one_row():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(30, 5))
    labels = np.r_[np.zeros(10, int), np.arange(1, 21)]
    several = x[:10]
    expected = np.sum((several - several.mean(axis=0)) ** 2) / np.sum(several ** 2)
    assert metrics.label_spread(x, labels) == pytest.approx(expected, rel=1e-9)
    assert np.isnan(metrics.label_spread(x, np.arange(30)))
