"""One data-parallel step of two gloo processes under torchrun equals one process over the same
global batch: the loss terms (averaged over ranks) and the gradients every rank applies. The
contrastive batch puts captions of one image on both ranks, so a loss that took them for
negatives, or saw only its own rank's rows, would differ; and a rank whose decision raises
alone makes every rank raise."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ddp_data import WORKER, output, recipe_options, torchrun, write_spec

from uncollapse.trainers.engine import recipe_class
from uncollapse.trainers.losses import multi_positive_infonce

CASES = {
    "contrastive_images": ("contrastive", {}),
    "contrastive_text": ("contrastive", {"image_features": None}),
    "lvm": ("lvm", {"dropout": 0.0}),
    # the field regularisers draw random probes per rank: weight 0, so not in the loss
    "flow": ("flow", {"divergence_weight": 0.0, "curl_weight": 0.0}),
    "slots": ("slots", {}),
}
NOT_COMPARED = {"flow": {"divergence", "curl"}}


def recipe_of(values: dict, name: str):
    cls = recipe_class(name)
    recipe = cls(cls.config_class(**values), torch.device("cpu"))
    recipe.preflight()
    recipe.setup()
    recipe.on_epoch(0)
    return recipe


def rows_of_each_rank(name: str, recipe) -> list[list[int]]:
    """Rows (indices of the recipe's plan) of one step on each of two ranks."""
    if name != "contrastive":
        plan = recipe.sampler.plan(0)  # one process: the global plan
        return [plan.batch(0).tolist(), plan.batch(1).tolist()]
    # units of 2 captions; images 0 and 1 have captions on both ranks
    groups = recipe.match_id[recipe.train_rows].numpy()
    first = np.unique(groups)[:6]
    where = {g: np.flatnonzero(groups == g) for g in first}
    a, b, c, d, e, f = first
    rank0 = [*where[a][:2], *where[b][:2], *where[c][:2], *where[d][:2]]
    rank1 = [*where[a][2:4], *where[e][:2], *where[f][:2], *where[b][2:4]]
    return [[int(r) for r in rank0], [int(r) for r in rank1]]


def single_process(recipe, rows: list[int], initial: dict):
    """The loss terms and gradients of one process over ``rows``. Contrastive: written here with
    dense positive masks by match_id (``multi_positive_infonce``), not by the recipe, whose
    column lookup assumes what its sampler guarantees (each image once in a batch) and the
    global batch of two ranks can break (an image in both)."""
    torch.manual_seed(0)
    model = recipe.build_model()
    model.load_state_dict(initial)
    if recipe.name == "contrastive":
        loss, terms = dense_contrastive(model, recipe.batch(torch.tensor(rows)))
    else:
        out = recipe.step(model, torch.tensor(rows))
        loss, terms = out.loss, out.terms
    loss.backward()
    terms = {k: float(v.detach()) for k, v in {"loss": loss, **terms}.items()}
    return terms, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def dense_contrastive(model, batch: dict):
    groups = batch["groups"]
    text, image, scale = model(batch["text"], batch.get("image"))
    if image is None:
        itself = torch.eye(len(groups), dtype=torch.bool)
        same = groups[:, None] == groups[None, :]
        loss = multi_positive_infonce(scale * text @ text.T, same & ~itself, candidates=~itself)
        terms = {"infonce": loss}
    else:
        image_groups = groups[::2]
        logits = scale * text @ image.T
        terms = {"infonce_text_to_image": multi_positive_infonce(
                     logits, groups[:, None] == image_groups[None, :]),
                 "infonce_image_to_text": multi_positive_infonce(
                     logits.T, image_groups[:, None] == groups[None, :])}
        loss = 0.5 * sum(terms.values())
    return loss, {**terms, "temperature": 1.0 / scale}


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp_step")
    cases, recipes = [], {}
    for case, (name, overrides) in CASES.items():
        values = recipe_options(name, tmp / name, out=str(tmp / case / "run"), steps=1,
                                **overrides)
        recipe = recipe_of(values, name)
        rows = rows_of_each_rank(name, recipe)
        recipes[case] = (recipe, rows)
        cases.append({"name": case, "recipe": name, "config": values, "rows": rows})
    spec = write_spec(tmp / "spec.json", {"mode": "step", "cases": cases})
    done = torchrun(str(WORKER), str(spec), str(tmp))
    assert done.returncode == 0, output(done)
    return tmp, recipes


@pytest.mark.parametrize("case", list(CASES))
def test_two_process_step_equals_one_process_over_the_global_batch(ran, case):
    tmp, recipes = ran
    recipe, rows = recipes[case]
    saved = torch.load(tmp / f"{case}.pt", weights_only=True)
    terms, grads = single_process(recipe, rows[0] + rows[1], saved["initial"])
    skip = NOT_COMPARED.get(CASES[case][0], set())
    for name, value in terms.items():
        if name not in skip:
            assert saved["terms"][name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    assert set(saved["grads"]) == set(grads)
    assert sum(float(g.abs().sum()) > 0 for g in grads.values()) > 2  # a real step
    for name, grad in grads.items():
        torch.testing.assert_close(saved["grads"][name], grad, rtol=1e-4, atol=1e-6,
                                   msg=f"gradient of {name}")


@pytest.mark.parametrize("case", ["contrastive_images", "contrastive_text"])
def test_one_process_contrastive_loss_equals_the_dense_mask_form(ran, case):
    """On a batch of the recipe's own sampler (each image once), the recipe's loss and gradients
    equal the dense form's."""
    tmp, recipes = ran
    recipe, _ = recipes[case]
    saved = torch.load(tmp / f"{case}.pt", weights_only=True)
    rows = torch.from_numpy(recipe.sampler.plan(0).batch(0))
    torch.manual_seed(0)
    model = recipe.build_model()
    model.load_state_dict(saved["initial"])
    out = recipe.step(model, rows)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    loss, terms = dense_contrastive(model, recipe.batch(rows))
    loss.backward()
    assert float(out.loss.detach()) == pytest.approx(float(loss.detach()), rel=1e-6)
    for name, value in terms.items():
        expected = float(value.detach())
        assert float(out.terms[name].detach()) == pytest.approx(expected, rel=1e-6), name
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-6)


def test_a_per_rank_loss_would_differ_from_the_global_one(ran):
    """The contrastive case is sensitive: each rank's batch alone gives another loss (it misses
    the positive image on the other rank and half the negatives)."""
    tmp, recipes = ran
    recipe, rows = recipes["contrastive_images"]
    saved = torch.load(tmp / "contrastive_images.pt", weights_only=True)
    alone = [single_process(recipe, r, saved["initial"])[0]["loss"] for r in rows]
    assert abs(np.mean(alone) - saved["terms"]["loss"]) > 1e-3


def test_captions_of_one_image_on_two_ranks_are_positives_of_both_copies(ran):
    """Images 0 and 1 sit in both ranks' batches: the 2-process text-to-image term counts both
    copies of a caption's image as positives, not the other rank's copy as a negative."""
    tmp, recipes = ran
    recipe, rows = recipes["contrastive_images"]
    saved = torch.load(tmp / "contrastive_images.pt", weights_only=True)
    model = recipe.build_model()
    model.load_state_dict(saved["initial"])
    batch = recipe.batch(torch.tensor(rows[0] + rows[1]))
    with torch.no_grad():
        text, image, scale = model(batch["text"], batch["image"])
    logits = scale * text @ image.T
    groups, image_groups = batch["groups"], batch["groups"][::2]
    assert len(torch.unique(image_groups)) == len(image_groups) - 2  # two images twice
    by_match_id = multi_positive_infonce(logits, groups[:, None] == image_groups[None, :])
    own_copy_only = F.cross_entropy(logits, torch.arange(len(image_groups)).repeat_interleave(2))
    assert saved["terms"]["infonce_text_to_image"] == pytest.approx(float(by_match_id),
                                                                     rel=1e-5)
    assert float(own_copy_only) - float(by_match_id) > 1e-2


def test_a_rank_that_raises_alone_stops_every_rank(ran):
    tmp, _ = ran
    raised = [json.loads((tmp / f"raised{r}.json").read_text()) for r in range(2)]
    assert raised[1] == {"type": "ValueError", "message": "rank one's own error"}
    assert raised[0]["type"] == "RankStoppedError"
    assert "rank 1 stopped the run" in raised[0]["message"]
