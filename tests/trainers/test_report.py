"""``uncollapse report`` on flow and slots runs: the trajectory figure and the slots grid are
written at their exact pixel size, embedded in index.html, drawn from arrays of the right shape,
and a projection.npz that does not fit its recipe stops the report with the file named."""

from __future__ import annotations

import base64
import json
import re
import shutil

import matplotlib.image
import numpy as np
import pytest
from click.testing import CliRunner

from uncollapse.cli import main
from uncollapse.data.attributes.synthetic import (
    synthetic_attribute_embeddings,
    write_attribute_table,
)
from uncollapse.data.scenes.contract import save_scenes
from uncollapse.pipeline.scenes import generate_scenes
from uncollapse.trainers.engine import train
from uncollapse.trainers.flow.config import FlowConfig
from uncollapse.trainers.flow.plots import FIGURE_INCHES, combination_label
from uncollapse.trainers.flow.recipe import FlowRecipe
from uncollapse.trainers.plots import DPI
from uncollapse.trainers.slots.config import SlotsConfig
from uncollapse.trainers.slots.plots import grid_inches
from uncollapse.trainers.slots.recipe import SlotsRecipe

FLOW_STEPS = 3
DIM = 32


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("flow_report")
    embeddings, table = synthetic_attribute_embeddings(rows=600, dim=DIM, attributes=3,
                                                       identities=40, seed=0)
    np.save(tmp / "embeddings.npy", embeddings)
    write_attribute_table(table, tmp / "attributes.parquet")
    train(FlowRecipe, FlowConfig(
        out=str(tmp / "run"), embeddings=str(tmp / "embeddings.npy"),
        attributes=str(tmp / "attributes.parquet"), steps=20, batch_size=64, per_group=8,
        hidden=64, lr=2e-2, warmup_steps=2, flow_steps=FLOW_STEPS, device="cpu", quiet=True,
        log_every=5, monitor_warmup=1000))
    return tmp / "run"


@pytest.fixture(scope="module")
def slots_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slots_report")
    save_scenes(generate_scenes(48, 16, 3, seed=0), tmp / "scenes.npz")
    train(SlotsRecipe, SlotsConfig(
        out=str(tmp / "run"), scenes=str(tmp / "scenes.npz"), steps=6, batch_size=16, slots=4,
        slot_dim=16, channels=16, lr=3e-3, warmup_steps=2, device="cpu", quiet=True,
        log_every=3, monitor_warmup=1000, eval_fraction=0.25))
    return tmp / "run"


def report(run_dir):
    return CliRunner().invoke(main, ["report", str(run_dir)])


def embedded(page: str, name: str) -> bytes:
    """The bytes of the image embedded in ``page`` under alt text ``name``."""
    found = re.findall(rf'<img alt="{re.escape(name)}"[^>]* src="data:image/png;base64,'
                       r'([^"]+)"', page)
    assert len(found) == 1, name
    return base64.b64decode(found[0])


def pixels(inches: tuple[float, float]) -> tuple[int, int]:
    """(height, width) in pixels of a figure of (width, height) inches saved at DPI."""
    return round(inches[1] * DPI), round(inches[0] * DPI)


def test_flow_arrays_hold_every_euler_step_and_the_bank(flow_run):
    evaluation = json.loads((flow_run / "eval.json").read_text())
    n = evaluation["eval_rows"]
    with np.load(flow_run / "projection.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    assert arrays["trajectory"].shape == (FLOW_STEPS + 1, n, DIM)
    assert arrays["steering"].shape == (n, DIM) and arrays["groups"].shape == (n,)
    np.testing.assert_array_equal(arrays["trajectory"][-1], arrays["pred"])
    # every Euler step lands on the sphere, and the steps actually move
    np.testing.assert_allclose(np.linalg.norm(arrays["trajectory"], axis=-1), 1.0, atol=1e-5)
    assert (np.linalg.norm(np.diff(arrays["trajectory"], axis=0), axis=-1).mean(axis=1) > 0).all()
    # 3 attributes, every combination has training rows: the bank holds all 8 prototypes
    assert arrays["prototypes"].shape == (8, DIM)
    assert arrays["prototype_ids"].tolist() == list(range(8))
    assert arrays["attribute_names"].tolist() == ["attr0", "attr1", "attr2"]
    # "target" is each row's target prototype
    np.testing.assert_array_equal(arrays["target"], arrays["prototypes"][arrays["groups"]])
    # the figure's claim, read from the arrays: z' lands nearest its target's star as often as
    # the evaluation's cluster purity says, and far more often than the input z does
    def nearest(points):
        return arrays["prototype_ids"][(points @ arrays["prototypes"].T).argmax(axis=1)]
    landed = float((nearest(arrays["pred"]) == arrays["groups"]).mean())
    assert landed == pytest.approx(evaluation["flow/cluster_purity"], abs=1e-6)
    assert landed > 0.9 > (nearest(arrays["trajectory"][0]) == arrays["groups"]).mean()


def test_flow_report_draws_the_trajectories_and_embeds_them(flow_run):
    result = report(flow_run)
    assert result.exit_code == 0, result.output
    out = flow_run / "report"
    png = out / "flow-trajectories.png"
    image = matplotlib.image.imread(png)
    assert image.shape == (*pixels(FIGURE_INCHES), 4)
    assert image[..., :3].std() > 0.05  # drawn, not a blank canvas
    page = (out / "index.html").read_text()
    assert embedded(page, "flow-trajectories") == png.read_bytes()
    # the recipe's figure comes first, before the training curves
    assert page.index("<h2>Flow trajectories</h2>") < page.index('alt="loss"')
    # every PNG of the report is on the page, the generic projection among them
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {"flow-trajectories.png", "projection.png", "curve-loss.png"} <= set(pngs)
    assert page.count("data:image/png;base64,") == len(pngs)


def test_slots_report_draws_the_grid_and_embeds_it(slots_run):
    with np.load(slots_run / "projection.npz", allow_pickle=False) as data:
        rows, slots = data["masks"].shape[:2]
    assert (rows, slots) == (8, 4)
    result = report(slots_run)
    assert result.exit_code == 0, result.output
    out = slots_run / "report"
    png = out / "slots-grid.png"
    image = matplotlib.image.imread(png)
    # 8 image rows; columns: image, reconstruction, true mask, predicted mask, 4 slot masks
    assert image.shape == (*pixels(grid_inches(8, 4)), 4) == (1111, 1056, 4)
    assert image[..., :3].std() > 0.05
    page = (out / "index.html").read_text()
    assert embedded(page, "slots-grid") == png.read_bytes()
    assert "<h2>Slots: images, reconstructions and masks</h2>" in page
    assert "flow-trajectories" not in page
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert page.count("data:image/png;base64,") == len(pngs)


def test_combination_labels_name_the_attributes_that_are_set():
    names = ["smiling", "glasses", "hat"]
    assert combination_label(5, names) == "smiling+hat"
    assert combination_label(0, names) == "none"
    assert combination_label(3, []) == "combination 3"


def _rewrite(run_dir, tmp_path, **changes):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report"))
    with np.load(copy / "projection.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    for key, change in changes.items():
        arrays[key] = change(arrays[key])
    np.savez(copy / "projection.npz", **arrays)
    return copy


@pytest.mark.parametrize(("which", "changes", "message"), [
    ("flow", {"trajectory": lambda a: a[-1]}, "trajectory has shape"),
    ("flow", {"steering": lambda a: a[:-1]}, "steering has shape"),
    ("flow", {"target": lambda a: a[:-1]}, "target has shape"),
    ("flow", {"trajectory": lambda a: np.where(np.arange(a.shape[1])[None, :, None] == 0,
                                               np.nan, a)}, "non-finite"),
    ("slots", {"masks": lambda a: a[:, :, :-1]}, "masks has shape"),
    ("slots", {"pred": lambda a: np.full_like(a, np.inf)}, "pred holds non-finite values"),
    ("slots", {"images": lambda a: a.astype(np.float32)}, "expected [n >= 1, H, W, 3] uint8"),
])
def test_a_projection_that_does_not_fit_its_recipe_is_refused(flow_run, slots_run, tmp_path,
                                                              which, changes, message):
    copy = _rewrite(flow_run if which == "flow" else slots_run, tmp_path, **changes)
    result = report(copy)
    assert result.exit_code == 2, result.output
    assert "projection.npz" in result.output and message in result.output
    assert "Traceback" not in result.output
    assert not (copy / "report").exists()  # nothing half-written


def test_an_unreadable_projection_is_refused(slots_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(slots_run, copy, ignore=shutil.ignore_patterns("report"))
    (copy / "projection.npz").write_bytes(b"not a zip")
    result = report(copy)
    assert result.exit_code == 2, result.output
    assert "projection.npz" in result.output and "not a readable NPZ" in result.output
    assert not (copy / "report").exists()
