"""`uncollapse build captions` from the command line: formats, flags, --strict, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from uncollapse.errors import ToolError

REPO = Path(__file__).resolve().parents[3]
COCO_1000 = REPO / "data" / "coco" / "captions_val2017_1000.json"


def clean_tokens(tmp_path: Path) -> Path:
    path = tmp_path / "Flickr8k.token.txt"
    path.write_text("".join(f"{img}.jpg#{n}\t{img} caption number {n} .\n"
                            for n in range(5) for img in ("3385593926_d3e9c21170",
                                                          "2677656448_6b7e7702af")))
    return path


def test_build_token_file_with_split_files(caption_contract, run, tmp_path, isolated_cache):
    tokens = clean_tokens(tmp_path)
    train = tmp_path / "Flickr_8k.trainImages.txt"
    train.write_text("3385593926_d3e9c21170.jpg\n")
    test = tmp_path / "Flickr_8k.testImages.txt"
    test.write_text("2677656448_6b7e7702af.jpg\n")
    out = tmp_path / "out" / "captions.parquet"
    out.parent.mkdir()

    result = run("build", "captions", tokens, "--split-file", f"train={train}",
                 "--split-file", f"test={test}", "-o", out)

    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stderr
    table = pl.read_parquet(out)
    assert table.schema == caption_contract
    assert dict(table.select("image_id", "split").unique().iter_rows()) == {
        "3385593926_d3e9c21170": "train", "2677656448_6b7e7702af": "test"}
    assert list(isolated_cache.glob("captions/*/*/captions.parquet"))

    again = run("build", "captions", tokens, "--split-file", f"train={train}",
                "--split-file", f"test={test}")
    assert again.exit_code == 0
    assert "cache hit" in again.stderr


def test_image_in_no_split_list_is_reported_and_kept(run, tmp_path):
    tokens = clean_tokens(tmp_path)
    train = tmp_path / "train.txt"
    train.write_text("3385593926_d3e9c21170.jpg\n")
    out = tmp_path / "captions.parquet"

    result = run("build", "captions", tokens, "--split-file", f"train={train}", "-o", out)

    assert result.exit_code == 0
    assert "SOURCE_IMAGE_NOT_IN_SPLIT" in result.stdout
    assert "2677656448_6b7e7702af" in result.stdout
    table = pl.read_parquet(out)
    assert table.filter(pl.col("split").is_null())["image_id"].unique().to_list() == [
        "2677656448_6b7e7702af"]


def test_bad_split_file_argument_exits_2(run, tmp_path):
    result = run("build", "captions", clean_tokens(tmp_path), "--split-file", "train.txt")

    assert result.exit_code == 2
    assert "expected SPLIT=PATH" in result.output


def test_missing_split_file_exits_2_naming_it(run, tmp_path):
    result = run("build", "captions", clean_tokens(tmp_path), "--split-file",
                 f"train={tmp_path / 'nope.txt'}")

    assert result.exit_code == 2
    assert "nope.txt" in result.output
    assert "Traceback" not in result.output


def test_build_coco_with_split_override_and_splits_filter(run, tmp_path):
    out = tmp_path / "captions.parquet"

    result = run("build", "captions", COCO_1000, "--split", "test", "-o", out)
    assert result.exit_code == 0, result.output
    assert pl.read_parquet(out)["split"].unique().to_list() == ["test"]

    kept = run("build", "captions", COCO_1000, "--splits", "train,restval", "-o", out)
    assert kept.exit_code == 1  # nothing of a val file is in train or restval: BUILD_EMPTY
    assert "SOURCE_ROWS_OUTSIDE_SPLITS" in kept.stdout and "BUILD_EMPTY" in kept.stdout
    assert pl.read_parquet(out).height == 5005  # the earlier output is left as it was
    allowed = run("build", "captions", COCO_1000, "--splits", "train,restval", "-o", out,
                  "--allow-empty")
    assert allowed.exit_code == 0
    assert pl.read_parquet(out).height == 0


def test_build_bundled_coco(run, tmp_path):
    out = tmp_path / "captions.parquet"

    result = run("build", "captions", COCO_1000, "-o", out)

    assert result.exit_code == 0
    assert "SOURCE_WHITESPACE_STRIPPED" in result.stdout
    table = pl.read_parquet(out)
    assert (table.height, table["image_id"].n_unique()) == (5005, 1000)
    assert table["split"].unique().to_list() == ["val"]


def test_explicit_format(run, tmp_path):
    path = tmp_path / "captions.txt"
    path.write_text("junk header line\n9.jpg#0\tone\n9.jpg#1\ttwo\n")
    out = tmp_path / "captions.parquet"

    undetected = run("build", "captions", path, "-o", out)
    assert undetected.exit_code == 2
    assert f"{path}, line 1: cannot tell the caption format" in undetected.output
    assert not out.exists()

    result = run("build", "captions", path, "--source-format", "tokens", "-o", out)
    assert result.exit_code == 0
    assert pl.read_parquet(out)["caption"].to_list() == ["one", "two"]


def test_undetectable_or_missing_source_exits_2(run, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("# My dataset\n\nSome prose.\n")

    result = run("build", "captions", notes)
    assert result.exit_code == 2
    assert str(notes) in result.output
    assert "(--source-format, one of hf, karpathy" in result.output

    missing = run("build", "captions", tmp_path / "missing.json")
    assert missing.exit_code == 2
    assert "missing.json" in missing.output
    assert "Traceback" not in missing.output


def test_hub_id_offline_exits_2_with_a_clear_message(run, tmp_path, monkeypatch):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)

    result = run("build", "captions", "uncollapse-tests/no-such-flickr30k")

    assert result.exit_code == 2
    assert "uncollapse-tests/no-such-flickr30k" in result.output
    assert "save_to_disk" in result.output
    assert "Traceback" not in result.output


def test_hf_saved_folder_from_the_cli(run, tmp_path):
    import datasets

    folder = tmp_path / "flickr30k"
    datasets.Dataset.from_dict({
        "image": [None, None], "caption": [["a", "b", "c", "d", "e"], ["f", "g", "h", "i", "j"]],
        "sentids": [["0", "1", "2", "3", "4"], ["5", "6", "7", "8", "9"]],
        "split": ["train", "val"], "img_id": ["0", "1"],
        "filename": ["1000092795.jpg", "10002456.jpg"]}).save_to_disk(str(folder))
    out = tmp_path / "captions.parquet"

    result = run("build", "captions", folder, "--splits", "train", "-o", out)

    assert result.exit_code == 0, result.output
    table = pl.read_parquet(out)
    assert table["image_id"].unique().to_list() == ["1000092795"]
    assert table["caption"].to_list() == ["a", "b", "c", "d", "e"]


def test_strict_fails_and_writes_nothing_on_irregularities(run, tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_text("1.jpg#0\tone\nbroken line\n1.jpg#1\ttwo\n")
    out = tmp_path / "captions.parquet"

    result = run("build", "captions", path, "--strict", "-o", out)

    assert result.exit_code == 1
    assert "SOURCE_MALFORMED_LINE" in result.stdout
    assert "nothing written" in result.stderr
    assert not out.exists()

    lenient = run("build", "captions", path, "-o", out)
    assert lenient.exit_code == 0
    assert pl.read_parquet(out)["caption"].to_list() == ["one", "two"]

    # The report kept in the cache makes --strict fail on a cache hit too.
    cached = run("build", "captions", path, "--strict", "-o", tmp_path / "again.parquet")
    assert cached.exit_code == 1
    assert "cache hit" not in cached.stderr
    assert not (tmp_path / "again.parquet").exists()


def test_strict_passes_a_clean_source(run, tmp_path):
    out = tmp_path / "captions.parquet"

    result = run("build", "captions", clean_tokens(tmp_path), "--strict", "-o", out)

    assert result.exit_code == 0
    assert pl.read_parquet(out).height == 10


def test_strict_ignores_informational_findings(run, tmp_path):
    # Whitespace stripped and unusual caption counts are reported but are not irregularities.
    path = tmp_path / "tokens.txt"
    path.write_text("1.jpg#0\tone  \n1.jpg#1\ttwo\n2.jpg#0\tthree\n")
    out = tmp_path / "captions.parquet"

    result = run("build", "captions", path, "--strict", "-o", out)

    assert result.exit_code == 0
    assert "SOURCE_WHITESPACE_STRIPPED" in result.stdout
    assert out.exists()


def test_quiet_still_prints_the_report_and_cache_dir_is_used(run, tmp_path, isolated_cache):
    elsewhere = tmp_path / "elsewhere"

    result = run("build", "captions", COCO_1000, "--quiet", "--cache-dir", elsewhere)

    # --quiet turns off spinners only: the report and the status lines still print
    assert result.exit_code == 0
    assert result.stdout.startswith(f"build captions {COCO_1000}: OK")
    assert "captions" in result.stdout and "5005" in result.stdout
    assert "built: captions" in result.stderr
    assert list(elsewhere.glob("captions/*/*/manifest.json"))
    assert not isolated_cache.exists()
    manifest = json.loads(next(elsewhere.glob("captions/*/*/manifest.json")).read_text())
    assert manifest["rows"] == {"captions.parquet": 5005}


def test_help_has_an_example(run):
    result = run("build", "captions", "--help")

    assert result.exit_code == 0
    assert "Example:" in result.output
    assert "--split-file" in result.output


def test_two_records_on_one_line_are_split_and_reported_with_the_line(run, tmp_path):
    path = tmp_path / "Flickr8k.token.txt"
    path.write_text("a1.jpg#0\tA dog runs .\tb2.jpg#0\tA cat sits .\n"
                    "a1.jpg#1\tTwo\tdogs .\n"
                    "b2.jpg#1\tsee c3.jpg#2 here\n")
    out = tmp_path / "captions.parquet"

    result = run("build", "captions", path, "--format", "json", "-o", out)

    assert result.exit_code == 0, result.output
    findings = {f["code"]: f for f in json.loads(result.stdout)["findings"]}
    joined = findings["SOURCE_RECORDS_ON_ONE_LINE"]
    assert joined["count"] == 1 and joined["examples"][0]["line"] == 1
    assert joined["examples"][0]["records"] == 2
    assert findings["SOURCE_TAB_IN_CAPTION"]["examples"][0]["source_row"] == 2
    assert findings["SOURCE_RECORD_KEY_IN_CAPTION"]["examples"][0]["source_row"] == 3
    table = pl.read_parquet(out)
    assert table.select("image_id", "caption_idx", "caption", "source_row").rows() == [
        ("a1", 0, "A dog runs .", 1), ("a1", 1, "Two\tdogs .", 2),
        ("b2", 0, "A cat sits .", 1), ("b2", 1, "see c3.jpg#2 here", 3)]

    strict = run("build", "captions", path, "--strict", "-o", tmp_path / "strict.parquet")
    assert strict.exit_code == 1
    assert "nothing written" in strict.stderr
    assert not (tmp_path / "strict.parquet").exists()


def test_splits_filter_counts_the_captions_left_out_not_the_splits(run, tmp_path):
    # the Flickr30k CSV layout with split lists: 3 train, 2 val and 1 test image, 5 captions each
    images = {"train": ["1000092795", "10002456", "1000268201"],
              "val": ["1000344755", "1000366164"], "test": ["1000523639"]}
    csv = tmp_path / "results.csv"
    csv.write_text("image_name| comment_number| comment\n" + "".join(
        f"{image}.jpg| {n}| caption {n} of {image} .\n"
        for names in images.values() for image in names for n in range(5)))
    lists = []
    for split, names in images.items():
        (tmp_path / f"{split}.txt").write_text("".join(f"{n}.jpg\n" for n in names))
        lists += ["--split-file", f"{split}={tmp_path / f'{split}.txt'}"]

    result = run("build", "captions", csv, *lists, "--splits", "train", "--format", "json",
                 "-o", tmp_path / "train.parquet")

    assert result.exit_code == 0, result.output
    (left_out,) = [f for f in json.loads(result.stdout)["findings"]
                   if f["code"] == "SOURCE_ROWS_OUTSIDE_SPLITS"]
    assert left_out["count"] == 15
    assert left_out["message"].startswith("15 caption(s) left out")
    assert {e["split"]: e["captions"] for e in left_out["examples"]} == {"test": 5, "val": 10}
    assert pl.read_parquet(tmp_path / "train.parquet").height == 15


# every build command reports like a validate command -------------------------------------------

def _build_args(run, tmp_path: Path) -> dict[str, list]:
    """Arguments of each build command, on small inputs written here."""
    import numpy as np

    wiki = tmp_path / "wiki.txt"
    wiki.write_text("\n = A = \n\n one .\n two .\n three .\n\n = B = \n\n x .\n y .\n")
    chunks = tmp_path / "chunks.parquet"
    run("build", "chunks", wiki, "--unit", "line", "-o", chunks, "--cache-dir", tmp_path / "prep")
    np.save(tmp_path / "v.npy", np.ones((5, 4), dtype=np.float32))
    attrs = tmp_path / "attrs.csv"
    attrs.write_text("image_id,Smiling,Male\na.jpg,1,-1\nb.jpg,-1,1\n")
    return {
        "captions": ["captions", clean_tokens(tmp_path)],
        "chunks": ["chunks", wiki, "--unit", "line"],
        "sequences": ["sequences", chunks, "--vectors", tmp_path / "v.npy", "--context", "1"],
        "attributes": ["attributes", attrs],
        "scenes": ["scenes", "--num", "4", "--size", "16", "--max-objects", "2"],
    }


@pytest.mark.parametrize("family", ["captions", "chunks", "sequences", "attributes", "scenes"])
def test_every_build_prints_its_report_in_the_chosen_format(run, tmp_path, family):
    args = ["build", *_build_args(run, tmp_path)[family]]
    out = tmp_path / "out" / family
    out.parent.mkdir()

    as_json = run(*args, "--format", "json", "--json", tmp_path / "r.json", "--quiet", "-o", out)

    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)  # stdout holds the report alone
    assert report["kind"] == f"build {family}" and report["ok"] is True
    assert report["stats"] and json.loads((tmp_path / "r.json").read_text()) == report
    assert "built: " in as_json.stderr and f"wrote {out}" in as_json.stderr
    assert out.exists()
    as_text = run(*args)
    assert as_text.exit_code == 0
    assert as_text.stdout.startswith(f"build {family} ")
    assert "cache hit: " in as_text.stderr and "cache hit" not in as_text.stdout
    as_github = run(*args, "--format", "github")
    assert as_github.exit_code == 0
    assert all(line.startswith("::") for line in as_github.stdout.splitlines())


def test_build_returns_one_result_shape_for_every_family(tmp_path):
    import numpy as np

    from uncollapse.cache.store import Cache
    from uncollapse.pipeline.attributes import build_attributes
    from uncollapse.pipeline.captions import build_captions
    from uncollapse.pipeline.result import Built
    from uncollapse.pipeline.scenes import build_scenes
    from uncollapse.pipeline.sequences import build_chunks, build_sequences

    cache = Cache(tmp_path / "cache")
    wiki = tmp_path / "wiki.txt"
    wiki.write_text("\n = A = \n\n one .\n two .\n three .\n\n = B = \n\n x .\n y .\n")
    attrs = tmp_path / "attrs.csv"
    attrs.write_text("image_id,Smiling\na.jpg,1\nb.jpg,-1\n")
    chunks = build_chunks(wiki, unit="line", cache=cache)
    np.save(tmp_path / "v.npy", np.ones((chunks.table().height, 3), dtype=np.float32))
    results = {
        "captions": build_captions(clean_tokens(tmp_path), cache=cache),
        "chunks": chunks,
        "sequences": build_sequences(chunks.path, vectors=tmp_path / "v.npy", context_length=1,
                                     cache=cache),
        "attributes": build_attributes(attrs, cache=cache),
        "scenes": build_scenes(3, 16, 2, cache=cache),
    }
    for family, built in results.items():
        assert isinstance(built, Built)
        assert built.path.exists() and built.path.parent == built.entry.path
        assert built.report.kind == f"build {family}" and built.hit is False
    assert results["chunks"].report.stats["documents"] == 2
    assert results["sequences"].report.stats["samples"] == 3
    assert results["scenes"].report.stats["scenes"] == 3
    assert results["captions"].table().height == 10
    with pytest.raises(ToolError, match="not a table"):
        results["scenes"].table()
    assert build_scenes(3, 16, 2, cache=cache).hit is True


def test_to_dataset_without_the_hf_extra_names_the_extra(tmp_path, monkeypatch):
    import sys

    from uncollapse.extras import MissingExtra
    from uncollapse.pipeline.captions import build_captions

    built = build_captions(clean_tokens(tmp_path))
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets now fails
    with pytest.raises(MissingExtra, match=r"\.\[hf\]"):
        built.to_dataset()


def test_a_malformed_token_line_is_annotated_at_its_file_and_line(run, tmp_path):
    path = tmp_path / "Flickr8k,token:100%.txt"  # every character GitHub needs escaped
    path.write_text("1.jpg#0\tone\n1.jpg#1\ttwo\nbroken line\n\n2.jpg#0\tthree\n")

    report = json.loads(run("build", "captions", path, "--format", "json").stdout)
    malformed = next(f for f in report["findings"] if f["code"] == "SOURCE_MALFORMED_LINE")
    assert (malformed["file"], malformed["line"]) == (str(path), 3)

    github = run("build", "captions", path, "--format", "github").stdout.splitlines()
    escaped = str(path).replace("%", "%25").replace(",", "%2C").replace(":", "%3A")
    assert (f"::warning file={escaped},line=3,title=SOURCE_MALFORMED_LINE::"
            "1 malformed line(s) skipped (count 1)") in [line.split(" Fix:")[0]
                                                          for line in github]


def test_a_split_list_finding_points_at_the_list_file_and_line(run, tmp_path):
    tokens = clean_tokens(tmp_path)
    train = tmp_path / "train.txt"
    train.write_text("3385593926_d3e9c21170.jpg\n2677656448_6b7e7702af.jpg\nmissing.jpg\n")

    report = json.loads(run("build", "captions", tokens, "--split-file", f"train={train}",
                            "--format", "json").stdout)
    orphans = next(f for f in report["findings"]
                   if f["code"] == "SOURCE_SPLIT_IMAGE_WITHOUT_CAPTIONS")
    assert (orphans["file"], orphans["line"]) == (str(train), 3)


def test_findings_of_a_json_source_carry_no_line(run, tmp_path):
    report = json.loads(run("build", "captions", COCO_1000, "--format", "json").stdout)
    assert report["findings"] and all("line" not in f for f in report["findings"])
