"""The demo's last page (demo/page.py), built from small artifacts made here, loaded in a real
headless Chromium: no console errors, every image decoded at its size, a screenshot written."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
COCO = ROOT / "data" / "coco" / "captions_val2017_1000.json"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def _png(path: Path, width: int, height: int) -> None:
    """A PNG of exactly width x height pixels, as `uncollapse report` would leave one."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width / 100, height / 100), dpi=100)
    figure.add_subplot().plot([0, 1, 2], [3, 1, 2])
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    assert png_size(path) == (width, height)


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> Path:
    """A demo folder holding a few of the demo's artifacts; the rest stays missing."""
    from uncollapse.pipeline.captions import read_captions
    from uncollapse.validators.batches.table import audit_table
    from uncollapse.validators.captions import validate_captions

    out = tmp_path_factory.mktemp("demo-out")
    table, _ = read_captions(COCO)
    table.write_parquet(out / "captions.parquet")
    row = pl.int_range(pl.len(), dtype=pl.Int64)
    table.with_columns(match_id=row, image_id=row.cast(pl.String)).write_parquet(
        out / "captions_positional.parquet")
    (out / "reports").mkdir()
    for name, path in (("captions.json", "captions.parquet"),
                       ("captions-row-ids.json", "captions_positional.parquet")):
        (out / "reports" / name).write_text(validate_captions(out / path).to_json())
    (out / "reports" / "batches-random.json").write_text(
        audit_table(out / "captions.parquet", sampler="random", batch_size=50).to_json())
    rng = np.random.default_rng(0)
    (out / "collapse").mkdir()
    targets = rng.standard_normal((300, 16)).astype(np.float32)
    np.save(out / "collapse" / "targets.npy", targets)
    np.save(out / "collapse" / "healthy.npy", targets + 0.1 * rng.standard_normal(targets.shape))
    np.save(out / "collapse" / "collapsed.npy", np.repeat(targets.mean(0, keepdims=True), 300, 0))
    _png(out / "runs" / "lvm" / "report" / "curve-loss.png", 500, 300)
    _png(out / "runs" / "lvm" / "report" / "projection.png", 400, 400)
    _png(out / "runs" / "slots_clamped" / "report" / "slots-grid.png", 720, 480)
    (out / "doctor").mkdir()
    (out / "doctor" / "lvm.json").write_text(json.dumps({"ok": True, "stats": {"causes": []}}))
    (out / "doctor" / "lvm_no_doc_ids.json").write_text(json.dumps({"ok": False, "stats": {
        "causes": [{"code": "NO_DOC_IDS", "confidence": 0.9, "fix": "rebuild with doc_ids"}]}}))
    result = subprocess.run([sys.executable, "demo/page.py", str(out)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {out / 'index.html'}"
    return out


def test_page_shows_every_pair_with_its_verdicts(demo_out):
    page = (demo_out / "index.html").read_text()
    from_module = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, 'demo'); import page; "
         "print('\\n'.join(p.title for p in page.PAIRS))"], cwd=ROOT, capture_output=True,
        text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True).stdout.splitlines()
    assert len(from_module) == 9
    for title in from_module:
        assert f"<h2>{title}</h2>" in page
    assert page.count('class="side broken"') == page.count('class="side fixed"') == 9
    # the reports that exist give their verdicts, the others say they did not run
    assert "captions check: INVALID (exit 1)" in page and "<code>GROUPS_ALL_UNIQUE</code>" in page
    assert "captions check: OK (exit 0)" in page
    assert "batches check: INVALID (exit 1)" in page
    assert "check: not run (no reports/batches-grouped.json)" in page
    assert "doctor: <code>NO_DOC_IDS</code> (0.90)" in page and "doctor: HEALTHY" in page
    assert "doctor: not run" in page
    assert "not run: runs/flow_batch/report/flow-trajectories.png" in page


def test_page_draws_its_own_pictures_and_the_readme_figure(demo_out):
    drawn = {p.name for p in (demo_out / "page").iterdir()}
    assert {"group-sizes.png", "group-sizes-row-ids.png", "positives-random.png",
            "positives-grouped.png", "pca-healthy.png", "pca-collapsed.png", "tour.png"} <= drawn
    assert png_size(demo_out / "page" / "tour.png") == (900, 600)


def _browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "install Debian's chromium (.ci/run does)"
    manager = sync_playwright().start()
    browser = manager.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    return manager, browser


def _load(browser, page_path: Path):
    """Open the page; returns the tab and the console errors and page errors it raised."""
    tab = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    tab.on("console", lambda message: errors.append(message.text)
           if message.type == "error" else None)
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(page_path.as_uri(), wait_until="load")
    return tab, errors


IMAGES = """() => Array.from(document.images).map(img => ({
  src: img.getAttribute("src"), complete: img.complete,
  width: img.naturalWidth, height: img.naturalHeight}))"""


@pytest.fixture(scope="module")
def browser():
    manager, browser = _browser()
    yield browser
    browser.close()
    manager.stop()


def test_page_loads_in_chromium_with_every_image_decoded(demo_out, browser, tmp_path):
    tab, errors = _load(browser, demo_out / "index.html")
    images = tab.evaluate(IMAGES)
    expected = sorted(str(p.relative_to(demo_out)) for p in demo_out.rglob("*.png")
                      if p.parent.name in ("page", "report") and p.name != "tour.png")
    assert sorted(image["src"] for image in images) == expected
    for image in images:
        assert image["complete"], image
        assert (image["width"], image["height"]) == png_size(demo_out / image["src"]), image
    assert errors == []
    shot = tmp_path / "demo-page.png"
    tab.screenshot(path=str(shot), full_page=True)
    width, height = png_size(shot)
    assert width == 1280 and height > 2000  # nine sections, not an empty page
    tab.close()


def test_the_browser_check_sees_a_broken_image(browser, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><img src="missing.png"></body></html>')
    tab, errors = _load(browser, page)
    (image,) = tab.evaluate(IMAGES)
    assert image["width"] == 0 and errors, "a missing image must show as an error"
    tab.close()


def test_page_builder_refuses_a_folder_that_is_not_there(tmp_path):
    result = subprocess.run([sys.executable, "demo/page.py", str(tmp_path / "nope")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "usage: python demo/page.py DEMO_OUT" in result.stderr
